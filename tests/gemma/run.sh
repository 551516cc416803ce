#!/bin/bash
# run.sh - system test of `kanoa-mlops serve --model tiny-gemma3.gguf`: a tiny
# random Gemma 3 (Q8_0, synthetic Gemma vocabulary: none of the shared SPM
# vocabularies has <start_of_turn>/<end_of_turn>) served on a loopback port.
# Checks in tests/gemma/client.py: /v1/models task, the Gemma chat template
# (system folded into the first user turn), chat streamed and not, stopping
# on <end_of_turn>, which forced tokens end a turn (<end_of_turn>, <eos>) and
# which do not (<start_of_turn>), image parts -> 400.
set -u
# shellcheck source=tests/helpers/serve.sh
source "$(dirname "$0")/../helpers/serve.sh"

"$synth" models synth --arch gemma3 --shape tiny --type Q8_0 --seed 8 -q \
    -o "$work/tiny-gemma3.gguf" >/dev/null || fail "synthesize tiny-gemma3 Q8_0"
serve_start --model "$work/tiny-gemma3.gguf" --ctx 256 --threads 2
PYTHONPATH=tests/helpers /usr/bin/python3 tests/gemma/client.py "$port"
rc=$?
serve_stop
serve_log_clean || exit 1
[ $rc -eq 0 ] || tail -n 20 "$work/log"
exit $rc
