#!/bin/bash
# run_gemma.sh - the engine's Gemma 3 logits against the NumPy reference
# (tests/ref/ref_gemma3.py), run by tests/ref/run.sh (owned by "arch").
#
# A tiny random gemma3 GGUF per weight type (dim 256, 6 layers so layer 5 is
# global, 2 heads / 1 KV head of 128, sliding window 64, SentencePiece vocab)
# and a 90-token prompt (longer than the window, so local layers mask);
# logits with 1 and 2 threads must be bit-identical. Tolerances as the llama
# check: F32/F16/BF16 1e-3 of the logit range; quantized 3e-2 against the
# plain reference, and 2e-2 against the reference with the engine's
# activation rounding (--act-quant; measured 0.6-1.1%: a 1e-7 float-order
# difference flips a few 8-bit activation or f16 KV roundings and the random
# 6-layer model with post-norms amplifies them; with Q8_0 and 1-3 tokens the
# two agree to ~6e-8).
# Prints ok/not ok lines and "N passed, N failed".
set -u
source "$(dirname "$0")/lib.sh"
ref_build_tool ref_tool
ids=$(seq -s ' ' 7 41 3700)
for type in F32 F16 BF16 Q8_0 Q4_0 Q6_K Q4_K_M Q5_K_M; do
    case $type in F32|F16|BF16) tol=1e-3 ;; *) tol=3e-2 ;; esac
    m=$work/gemma3-$type.gguf
    if ! "$synth" models synth --arch gemma3 --shape tiny --type "$type" --seed 6 -q \
            --vocab-from "$shared/data/tokenizer/ggml-vocab-llama-spm.gguf" -o "$m" >/dev/null; then
        bad "gemma3 $type: synthesize"
        continue
    fi
    # shellcheck disable=SC2086
    if ! "$work/ref_tool" logits "$m" "$work/e1.f32" 1 $ids 2>"$work/err" ||
       ! "$work/ref_tool" logits "$m" "$work/e2.f32" 2 $ids 2>>"$work/err"; then
        cat "$work/err"
        bad "gemma3 $type: engine logits"
        continue
    fi
    if cmp -s "$work/e1.f32" "$work/e2.f32"; then
        ok "gemma3 $type: logits identical with 1 and 2 threads"
    else
        bad "gemma3 $type: logits differ between 1 and 2 threads"
    fi
    # shellcheck disable=SC2086
    $py tests/ref/ref_gemma3.py "$m" "$work/r.f32" $ids || { bad "gemma3 $type: reference"; continue; }
    if out=$($py tests/ref/compare.py "$work/e1.f32" "$work/r.f32" $tol); then
        ok "gemma3 $type: float64 reference: $out"
    else
        bad "gemma3 $type: float64 reference: $out"
    fi
    [ $tol = 1e-3 ] && continue
    # shellcheck disable=SC2086
    $py tests/ref/ref_gemma3.py --act-quant "$m" "$work/rq.f32" $ids || {
        bad "gemma3 $type: reference with activation quantization"; continue; }
    if out=$($py tests/ref/compare.py "$work/e1.f32" "$work/rq.f32" 2e-2); then
        ok "gemma3 $type: reference with the engine's activation rounding: $out"
    else
        bad "gemma3 $type: reference with the engine's activation rounding: $out"
    fi
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
