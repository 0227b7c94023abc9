#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, with AddressSanitizer and UBSan) of the C parsers of
# untrusted bytes: the PE layout planner and the fork loader (an existing image from anyone).
# Each harness runs FUZZ_SECONDS (default 30) from the seed corpus in tests/fuzz/corpus/; a
# crash stops the script and leaves its input in $WORK for a regression test.  Installs clang
# from Debian/Ubuntu packages (apt, with sudo when not root) unless it is present.
# Run locally from the repository root:  FUZZ_SECONDS=3600 .ci/fuzz.sh   (the long run)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${FUZZ_SECONDS:-30}"
if ! command -v clang >/dev/null || ! echo 'int LLVMFuzzerTestOneInput(const char*d,long n){return 0;}' \
        | clang -x c -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then
    echo "== fuzz: installing clang (libFuzzer) from Debian"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang >/dev/null
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK" /dev/shm/cimfs-fuzz-load-*' EXIT
FLAGS="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1 -Ilibcimfs -Itests/c"
clang $FLAGS tests/fuzz/fuzz_pe_plan.c libcimfs/cim_pe.c -o "$WORK/fuzz_pe_plan"
clang $FLAGS tests/fuzz/fuzz_load.c libcimfs/*.c -o "$WORK/fuzz_load"
for target in pe_plan:pe load:load; do
    name="${target%%:*}"
    corpus="$WORK/corpus-$name"
    cp -r "tests/fuzz/corpus/${target##*:}" "$corpus"
    echo "== fuzz: $name for ${SECONDS_EACH}s"
    (cd "$WORK" && "./fuzz_$name" -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 "$corpus" 2>&1 | grep -E "DONE|stat::number_of_executed_units|ERROR|SUMMARY" || true)
    if ls "$WORK"/crash-* "$WORK"/leak-* "$WORK"/timeout-* >/dev/null 2>&1; then
        echo "== fuzz: $name found a crash:"; ls "$WORK"/crash-* "$WORK"/leak-* "$WORK"/timeout-* 2>/dev/null
        trap - EXIT
        exit 1
    fi
done
echo "== fuzz: clean"
