"""The echo server of Python's asyncore documentation (3.11), as written
there, for //bench:echo. Prints "listening on 127.0.0.1:PORT".

    python3 bench/echo_asyncore.py [PORT]    (0 or none: a free port)
"""
import sys
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)
import asyncore  # noqa: E402  (deprecated in 3.11, removed in 3.12)
import socket  # noqa: E402


class EchoHandler(asyncore.dispatcher_with_send):

    def handle_read(self):
        data = self.recv(8192)
        if data:
            self.send(data)


class EchoServer(asyncore.dispatcher):

    def __init__(self, host, port):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(1024)

    def handle_accepted(self, sock, addr):
        EchoHandler(sock)


server = EchoServer("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0)
print("listening on 127.0.0.1:%d" % server.socket.getsockname()[1],
      flush=True)
asyncore.loop(use_poll=True)
