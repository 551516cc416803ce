#!/bin/bash
# tests/cli/run.sh - CLI conformance suite over the built binary $KM_BIN.
#
# Commands are discovered from `kanoa-mlops --help` (the "commands:" block)
# and `kanoa-mlops models --help` (the "subcommands:" block), so a command
# added to commands.def or models.def is covered without editing this file.
# For every command C (and every `models S`) it checks the contract of
# src/cli/cli.h:
#   C --help          exit 0, usage on stdout, nothing on stderr
#   C -h              same stdout as --help
#   help C            same stdout and exit as `C --help`   (top-level only)
#   C --no-such-flag  exit 2, usage on stderr, nothing on stdout, and a first
#                     line "kanoa-mlops C: <detail naming '--no-such-flag-xyz'>"
# plus the top-level rules: --help/-h, --version/-V, no arguments, unknown
# command, `help <unknown>`, `models` with no / unknown subcommand.
# Every run has a timeout and runs in a scratch directory with HOME, HF_HOME
# and XDG dirs pointing into it, so no command touches the real environment.
# Ends with "N passed, N failed".
set -u
bin=${KM_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/build/asan/kanoa-mlops}
passed=0
failed=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/home" "$scratch/cwd"
export HOME="$scratch/home" HF_HOME="$scratch/home/hf" \
       XDG_CACHE_HOME="$scratch/home/cache" XDG_CONFIG_HOME="$scratch/home/config"
cd "$scratch/cwd" || exit 1

ok()   { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); echo "not ok - $1${2:+: $2}"; }

# run ARGS...: sets $rc, $out, $err (stdin closed, 20 s limit)
run() {
    timeout 20 "$bin" "$@" </dev/null >"$scratch/out" 2>"$scratch/err"
    rc=$?
    out=$(cat "$scratch/out")
    err=$(cat "$scratch/err")
}

# check_help NAME ARGS...: `ARGS --help` and `ARGS -h` print usage to stdout.
check_help() {
    local name=$1; shift
    run "$@" --help
    local help_out=$out
    if [ $rc -ne 0 ]; then fail "$name --help exits 0" "exit $rc"
    elif ! grep -qi 'usage' <<<"$out"; then fail "$name --help prints usage on stdout" "stdout: ${out:0:80}"
    elif [ -n "$err" ]; then fail "$name --help prints nothing on stderr" "stderr: ${err:0:80}"
    else ok "$name --help"; fi
    run "$@" -h
    if [ $rc -eq 0 ] && [ "$out" == "$help_out" ]; then ok "$name -h same as --help"
    else fail "$name -h same as --help" "exit $rc"; fi
    HELP_OUT=$help_out
}

# check_bad_flag NAME ARGS...: an unknown flag is a usage error.
check_bad_flag() {
    local name=$1; shift
    run "$@" --no-such-flag-xyz
    if [ $rc -ne 2 ]; then fail "$name --no-such-flag-xyz exits 2" "exit $rc"
    elif ! grep -qi 'usage' <<<"$err"; then fail "$name bad flag prints usage on stderr" "stderr: ${err:0:80}"
    elif [ -n "$out" ]; then fail "$name bad flag prints nothing on stdout" "stdout: ${out:0:80}"
    elif ! grep -q "^kanoa-mlops $name: .*'--no-such-flag-xyz'" <<<"$(head -n 1 <<<"$err")"; then
        fail "$name bad flag is named as 'kanoa-mlops $name: ...'" "stderr: $(head -n 1 <<<"$err")"
    else ok "$name bad flag"; fi
}

# list_block HEADER: names from the block after HEADER in $out.
list_block() {
    awk -v h="$1" '$0 == h {on = 1; next} on && /^$/ {exit} on {print $1}' <<<"$out"
}

# --- top level -------------------------------------------------------------
run --help
top_help=$out
if [ $rc -eq 0 ] && grep -q '^usage: kanoa-mlops' <<<"$out" && [ -z "$err" ]; then ok "--help"
else fail "--help" "exit $rc"; fi
commands=$(list_block "commands:" | grep -vx help)
if [ -n "$commands" ]; then ok "--help lists commands"; else fail "--help lists commands"; fi
run -h
if [ $rc -eq 0 ] && [ "$out" == "$top_help" ]; then ok "-h same as --help"; else fail "-h same as --help"; fi
run help
if [ $rc -eq 0 ] && [ "$out" == "$top_help" ]; then ok "help alone same as --help"; else fail "help alone same as --help"; fi
run --version
if [ $rc -eq 0 ] && grep -Eq '^kanoa-mlops [0-9]+\.[0-9]+' <<<"$out" && [ -z "$err" ]; then ok "--version"
else fail "--version" "exit $rc stdout ${out:0:60}"; fi
version_out=$out
run -V
if [ $rc -eq 0 ] && [ "$out" == "$version_out" ]; then ok "-V same as --version"; else fail "-V same as --version"; fi
run
if [ $rc -eq 2 ] && grep -q '^usage: kanoa-mlops' <<<"$err" && [ -z "$out" ]; then ok "no arguments: usage on stderr, exit 2"
else fail "no arguments: usage on stderr, exit 2" "exit $rc"; fi
run no-such-command
if [ $rc -eq 2 ] && grep -q "unknown command 'no-such-command'" <<<"$err" && grep -q '^usage:' <<<"$err" && [ -z "$out" ]; then
    ok "unknown command: exit 2, named, usage on stderr"
else fail "unknown command: exit 2, named, usage on stderr" "exit $rc"; fi
run help no-such-command
if [ $rc -eq 2 ] && grep -q "unknown command 'no-such-command'" <<<"$err" && [ -z "$out" ]; then ok "help <unknown>: exit 2"
else fail "help <unknown>: exit 2" "exit $rc"; fi

# --- every command -----------------------------------------------------------
for c in $commands; do
    check_help "$c" "$c"
    c_help=$HELP_OUT
    run help "$c"
    if [ $rc -eq 0 ] && [ "$out" == "$c_help" ]; then ok "help $c same as $c --help"
    else fail "help $c same as $c --help" "exit $rc"; fi
    check_bad_flag "$c" "$c"
done

# --- every models subcommand -------------------------------------------------
run models --help
subs=$(list_block "subcommands:")
if [ -n "$subs" ]; then ok "models --help lists subcommands"; else fail "models --help lists subcommands"; fi
run models
if [ $rc -eq 2 ] && grep -q '^usage: kanoa-mlops models' <<<"$err"; then ok "models alone: usage on stderr, exit 2"
else fail "models alone: usage on stderr, exit 2" "exit $rc"; fi
run models no-such-sub
if [ $rc -eq 2 ] && grep -q "unknown subcommand 'no-such-sub'" <<<"$err" && [ -z "$out" ]; then ok "models <unknown>: exit 2"
else fail "models <unknown>: exit 2" "exit $rc"; fi
for s in $subs; do
    check_help "models $s" models "$s"
    check_bad_flag "models $s" models "$s"
done

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
