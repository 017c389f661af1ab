#!/usr/bin/env bash
# Compiles (syntax and types only) every ```cpp block of README.md against
# the repository's headers, so that the API tour cannot drift from the API.
#   scripts/check_readme_snippets.sh [README.md]
set -euo pipefail
cd "$(dirname "$0")/.."
readme="${1:-README.md}"
work="$(mktemp -d "${TMPDIR:-/tmp}/readme_snippets.XXXXXX")"
trap 'rm -rf "$work"' EXIT

python3 - "$readme" "$work" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"^```cpp\n(.*?)^```", text, re.S | re.M)
for i, code in enumerate(blocks):
    with open("%s/snippet%02d.cc" % (sys.argv[2], i), "w") as f:
        f.write(code)
print("%d C++ snippets in %s" % (len(blocks), sys.argv[1]))
PY

status=0
for f in "$work"/snippet*.cc; do
  if ! g++ -std=c++20 -fsyntax-only -Wall -Werror -I. "$f" 2>"$f.log"; then
    echo "check_readme_snippets.sh: $(basename "$f") does not compile:" >&2
    cat "$f" >&2
    cat "$f.log" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "check_readme_snippets.sh: every snippet compiles"
exit "$status"
