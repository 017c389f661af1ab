-- wrk script: POST /echo with a 1 KiB body (tests/stress/load.py).
wrk.method = "POST"
wrk.body = string.rep("0123456789abcdef", 64)
wrk.headers["Content-Type"] = "application/octet-stream"
