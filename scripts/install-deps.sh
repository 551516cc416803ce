#!/bin/sh
# install-deps.sh - install what kanoa-mlops needs on Debian 12, idempotently.
#
#   scripts/install-deps.sh build   libraries and tools to build
#   scripts/install-deps.sh test    plus everything `make test` uses
#
# Installs only what is missing (apt-get, through sudo when not root). When it
# cannot install, it prints the exact command to run and exits 1.
set -eu

BUILD_PKGS="build-essential pkg-config libmicrohttpd-dev libcurl4-openssl-dev
libjansson-dev libpq-dev libssl-dev libyaml-dev"
TEST_PKGS="libcriterion-dev python3 python3-numpy curl"

what=${1:-build}
pkgs=$BUILD_PKGS
if [ "$what" = test ]; then
    pkgs="$BUILD_PKGS $TEST_PKGS"
fi

missing=""
for p in $pkgs; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done

if [ -n "$missing" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO="sudo"
        else
            echo "install-deps: missing packages:$missing" >&2
            echo "install-deps: run as root: apt-get update && apt-get install -y$missing" >&2
            exit 1
        fi
    fi
    echo "install-deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
