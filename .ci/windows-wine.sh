#!/usr/bin/env bash
# Windows step: the C core built for Windows with mingw-w64 and run under wine,
# so the Windows half of cim_platform.c (CreateFileW share-mode directory
# lock, MoveFileExW commit, FindFirstFileW cleanup, BCryptGenRandom) and the
# cimfs.dll routing in cim_backend.c (absent here) really run.  Installs its
# tools from Debian/Ubuntu packages (apt, with sudo when not root) unless they
# are already present.
# Run locally from the repository root:  .ci/windows-wine.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WINE=/usr/lib/wine/wine64
if ! command -v x86_64-w64-mingw32-gcc >/dev/null || [ ! -x "$WINE" ]; then
    echo "== windows: installing gcc-mingw-w64-x86-64 and wine64 from Debian"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"  # CI runners elsewhere are not root
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends gcc-mingw-w64-x86-64 wine64 >/dev/null
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "== windows: build (mingw-w64, warnings are errors)"
x86_64-w64-mingw32-gcc -std=c11 -Wall -Wextra -Werror -O1 -Ilibcimfs tests/c/leak_check.c libcimfs/*.c \
    -o "$WORK/leak_check.exe" -lbcrypt
x86_64-w64-mingw32-gcc -std=c99 -Wall -Wextra -Werror -O2 -Ilibcimfs tests/c/sha512_check.c -o "$WORK/sha512_check.exe"
mkdir "$WORK/images"
echo "== windows: run under wine"
WINEPREFIX="$WORK/wineprefix" WINEDEBUG=-all "$WINE" "$WORK/leak_check.exe" "Z:$(echo "$WORK/images" | tr / '\\')"
WINEPREFIX="$WORK/wineprefix" WINEDEBUG=-all "$WINE" "$WORK/sha512_check.exe"
WINEPREFIX="$WORK/wineprefix" /usr/lib/wine/wineserver -w  # let wine finish before its prefix is removed
echo "== windows: clean"
