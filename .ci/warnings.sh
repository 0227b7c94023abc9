#!/usr/bin/env bash
# The C core compiles warning-free with gcc and clang (-Wall -Wextra -Wpedantic, C99), and the
# SHA-512 check with each (its AVX2 path is compiled under a per-function target attribute).
# MSVC /W4 is checked by the c-warnings job of .github/workflows/ci.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
for cc in gcc clang; do
    command -v "$cc" >/dev/null || { echo "== warnings: $cc not installed, skipped"; continue; }
    for f in libcimfs/*.c tests/c/sha512_check.c; do
        "$cc" -std=c99 -Wall -Wextra -Wpedantic -Werror -O2 -Ilibcimfs -c "$f" -o /dev/null
    done
    echo "== warnings: $cc clean"
done
