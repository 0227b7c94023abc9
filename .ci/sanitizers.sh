#!/usr/bin/env bash
# Sanitizer step: the C core under AddressSanitizer + UndefinedBehaviorSanitizer.
#   1. tests/c/leak_check.c: every API path from C, with LeakSanitizer on;
#      tests/c/sha512_check.c: each SHA-512 code path (portable, AVX2, AVX-512 lanes);
#      tests/c/bufpool_check.c: the recycled buffers' size classes;
#      tests/c/defer_stress.c: streams hashed on helper threads (TSan and ASan);
#      tests/c/fuzz_pe.c: the PE layout planner fed mutated headers;
#   2. the whole pytest suite against an extension built with the sanitizers
#      (Python itself is not instrumented, so the runtimes are preloaded and
#      leak checking is left to step 1).
# Run locally from the repository root:  .ci/sanitizers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CC="${CC:-cc}"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"

echo "== sanitizers: C leak check"
$CC -std=c11 $SAN -Wall -Ilibcimfs tests/c/leak_check.c libcimfs/*.c -o "$WORK/leak_check"
mkdir "$WORK/images"
ASAN_OPTIONS=detect_leaks=1 "$WORK/leak_check" "$WORK/images"
echo "== sanitizers: SHA-512, every code path against the portable one and known digests"
$CC -std=c99 $SAN -Wall -Wextra -Ilibcimfs tests/c/sha512_check.c -o "$WORK/sha512_check"
"$WORK/sha512_check"
echo "== sanitizers: recycled buffers (cim_bufpool.c)"
$CC -std=c11 $SAN -Wall -Wextra -Ilibcimfs tests/c/bufpool_check.c libcimfs/cim_bufpool.c libcimfs/cim_platform.c -lpthread -o "$WORK/bufpool_check"
ASAN_OPTIONS=detect_leaks=1 "$WORK/bufpool_check"
echo "== sanitizers: queued streams (cim_defer.c) under ThreadSanitizer, then ASan: byte-identical to one thread"
$CC -std=c11 -fsanitize=thread -g -O1 -Wall -Ilibcimfs tests/c/defer_stress.c libcimfs/*.c -lpthread -o "$WORK/defer_tsan"
mkdir "$WORK/tsan" && "$WORK/defer_tsan" "$WORK/tsan" 1000
$CC -std=c11 $SAN -Wall -Ilibcimfs tests/c/defer_stress.c libcimfs/*.c -lpthread -o "$WORK/defer_asan"
mkdir "$WORK/asan" && ASAN_OPTIONS=detect_leaks=1 "$WORK/defer_asan" "$WORK/asan"
echo "== sanitizers: PE planner fuzz"
$CC -std=c11 $SAN -Wall -Ilibcimfs -Itests/c tests/c/fuzz_pe.c libcimfs/cim_pe.c -o "$WORK/fuzz_pe"
"$WORK/fuzz_pe" 300000

echo "== sanitizers: pytest against the instrumented extension"
"$PYTHON" -m venv "$WORK/venv"
# shellcheck disable=SC1091
. "$WORK/venv/bin/activate"
rm -rf build  # no object files from an uninstrumented build may be reused
CFLAGS="$SAN" LDFLAGS="-fsanitize=address,undefined" pip install --no-cache-dir ".[test]"
rm -rf build
RUNTIMES="$($CC -print-file-name=libasan.so) $($CC -print-file-name=libubsan.so)"
# --capture=sys: sanitizer reports go to the real stderr even if the process aborts.
# The peak-RSS tests (1,000,000 files; a 512 MiB build) are deselected: ASan's shadow memory makes RSS meaningless.
ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD="$RUNTIMES" \
    pytest -q --capture=sys -p no:cacheprovider -k "not million_empty_files and not memory_does_not_grow_with_file_size"
deactivate
echo "== sanitizers: clean"
