#!/usr/bin/env bash
# Installs the command-line tools a make target runs and never skips, from Debian's packages.
# Usage: tools.sh TARGET COMMAND:PACKAGE...; `make test` asks for promtool (package prometheus)
# and docker-compose (tests/deploy), `make bench` for wrk. Where one is missing it installs it
# when it may (root, or sudo without a password), saying so in one line, and otherwise stops
# with one line saying what to install.
set -euo pipefail
target=$1
shift
need=()
for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
((${#need[@]})) || exit 0

if [ "$(id -u)" = 0 ]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    as_root=(none)
fi
if command -v apt-get >/dev/null && [ "${as_root[*]}" != none ]; then
    echo "make $target: installing ${need[*]} from Debian's packages"
    log=$(mktemp)
    if "${as_root[@]}" apt-get update -q >"$log" 2>&1 &&
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${need[@]}" >>"$log" 2>&1; then
        rm -f "$log"
        exit 0
    fi
    echo "make $target: apt-get install ${need[*]} failed; its output: $log" >&2
    exit 1
fi
echo "make $target needs ${need[*]} and this user cannot install Debian packages: install them (Debian/Ubuntu: sudo apt-get install ${need[*]}; macOS: brew install ${need[*]}), then rerun" >&2
exit 1
