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
# Tolerances as the llama check (rule in docs/engine.md "Reference
# tolerances"): F32/F16/BF16 1e-3 of the logit range; quantized 3e-2 against
# the plain reference and 1e-2 against the reference with the engine's
# activation rounding (--act-quant).
# Prints ok/not ok lines and "N passed, N failed".
set -u
source "$(dirname "$0")/lib.sh"
ref_build_tool ref_tool
ids=$(seq -s ' ' 7 41 6100)
ref_batch=:16
for type in F32 F16 BF16 Q8_0 Q4_0 Q6_K Q4_K_M Q5_K_M; do
    model=$work/gemma3-$type.gguf
    ref_synth "gemma3 $type" --arch gemma3 --shape tiny --type "$type" --seed 6 \
        --vocab-from "$shared/data/tokenizer/ggml-vocab-llama-spm.gguf" || continue
    ref_check "gemma3 $type logits" "$type" 1e-2 "" tests/ref/ref_gemma3.py \
        "$work/ref_tool" logits "$model"
    [ "$type" = F32 ] || continue
    # shellcheck disable=SC2086
    if "$work/ref_tool" logits "$model" "$work/e3.f32" 1:1 $ids 2>"$work/err" &&
       res=$($py tests/ref/compare.py "$work/e3.f32" "$work/r.f32" 1e-3); then
        ok "gemma3 F32 one token at a time: float64 reference: $res"
    else
        cat "$work/err"
        bad "gemma3 F32 one token at a time: float64 reference: ${res:-engine failed}"
    fi
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
