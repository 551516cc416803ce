#!/bin/bash
# run_gemma.sh - the engine's Gemma 3 logits against the NumPy reference
# (tests/ref/ref_gemma3.py), run by tests/ref/run.sh.
#
# A tiny random gemma3 GGUF per weight type (dim 256, 6 layers so layer 5 is
# global, 2 heads / 1 KV head of 128, sliding window 64, SentencePiece vocab)
# and a 150-token prompt, evaluated in batches of 16: the local layers' KV
# ring of 64 + 16 - 1 = 79 rows wraps, and keys older than the window are
# masked. Logits with 1 and 2 threads must be bit-identical; for F32 one
# token at a time (a ring of 64 rows) is checked against the reference too.
# Tolerances (max |diff| / logit range; the rule and the measurements are in
# docs/engine.md "Reference tolerances"): F32/F16/BF16 1e-3; quantized types
# 3e-2 against the plain reference; against the reference with the engine's
# activation rounding (--act-quant) 1e-5 for one token (the rounding is
# replicated bit for bit) and 2e-2 for the 150 tokens, where float32 noise
# flips a few roundings near a tie and Gemma's six norms per layer amplify
# each flip to ~0.5% (measured 0.6-1.2%).
# Prints ok/not ok lines and "N passed, N failed".
set -u
# shellcheck source=tests/ref/lib.sh
source "$(dirname "$0")/lib.sh"
ref_build_tool ref_tool
ids=$(seq -s ' ' 7 41 6100)
ref_batch=:16
for type in F32 F16 BF16 Q8_0 Q4_0 Q6_K Q4_K_M Q5_K_M; do
    model=$work/gemma3-$type.gguf
    ref_synth "gemma3 $type" --arch gemma3 --shape tiny --type "$type" --seed 6 \
        --vocab-from "$shared/data/tokenizer/ggml-vocab-llama-spm.gguf" || continue
    ref_check "gemma3 $type logits" "$type" 2e-2 "" tests/ref/ref_gemma3.py \
        "$work/ref_tool" logits "$model"
    case $type in
    F32)    # one token at a time: the local layers' ring is 64 rows
        # shellcheck disable=SC2086
        if "$work/ref_tool" logits "$model" "$work/e3.f32" 1:1 $ids 2>"$work/err" &&
           res=$($py tests/ref/compare.py "$work/e3.f32" "$work/r.f32" 1e-3); then
            ok "gemma3 F32 one token at a time: float64 reference: $res"
        else
            cat "$work/err"
            bad "gemma3 F32 one token at a time: float64 reference: ${res:-engine failed}"
        fi ;;
    F16|BF16) ;;
    *)      # one token: no rounding near a tie, so the same rounding everywhere
        if "$work/ref_tool" logits "$model" "$work/e4.f32" 1 7 2>"$work/err"; then
            ids=7 ref_compare "gemma3 $type one token: reference with the engine's activation rounding" \
                e4 r4 1e-5 "" tests/ref/ref_gemma3.py --act-quant
        else
            cat "$work/err"
            bad "gemma3 $type one token: engine"
        fi ;;
    esac
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
