#!/usr/bin/env bash
# The tools the deploy tests run and never skip: promtool (Debian package prometheus) and
# docker-compose. `make test` calls this first: where one is missing it installs it from
# Debian's packages when it may (root, or sudo without a password), saying so in one line, and
# otherwise stops with one line saying what to install.
set -euo pipefail
need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v docker-compose >/dev/null || need+=(docker-compose)
((${#need[@]})) || exit 0

if [ "$(id -u)" = 0 ]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    as_root=(none)
fi
if command -v apt-get >/dev/null && [ "${as_root[*]}" != none ]; then
    echo "make test: installing ${need[*]} from Debian's packages for tests/deploy (promtool, docker-compose)"
    log=$(mktemp)
    if "${as_root[@]}" apt-get update -q >"$log" 2>&1 &&
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${need[@]}" >>"$log" 2>&1; then
        rm -f "$log"
        exit 0
    fi
    echo "make test: apt-get install ${need[*]} failed; its output: $log" >&2
    exit 1
fi
echo "make test: tests/deploy need ${need[*]} and this user cannot install Debian packages: install them (Debian/Ubuntu: sudo apt-get install ${need[*]}; macOS: brew install prometheus docker-compose), then rerun" >&2
exit 1
