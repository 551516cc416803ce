#!/bin/bash
# run_embed.sh - the engine's embeddings against the NumPy reference
# (tests/ref/ref_bert.py), run by tests/ref/run.sh (owned by "arch").
#
# For bert and nomic-bert (tiny shapes, bge tokenizer vocab) and every weight
# type, three id sequences are embedded in one eng_embed batch with 1 and 2
# threads (must be bit-identical) and compared with the float64 reference.
# Tolerances (max |diff| per vector as a fraction of the reference vector's
# range, same rules as the logits check): F32/F16/BF16 1e-3; quantized types
# 3e-2 against the plain reference and 1e-2 against the reference with the
# engine's activation rounding (--act-quant). Prints ok/not ok lines and
# "N passed, N failed".
set -u
source "$(dirname "$0")/lib.sh"
ref_build_tool embed_tool
# [CLS] hello world [SEP] -- [CLS] the quick brown fox ... [SEP] -- [CLS] a [SEP]
ids="101 7592 2088 102 -- 101 1996 4248 2829 4419 14523 2058 1996 13971 3899 1012 102 -- 101 1037 102"
for arch in bert nomic-bert; do
    case $arch in bert) dim=128 ;; *) dim=256 ;; esac
    for type in F32 F16 BF16 Q8_0 Q4_0 Q6_K Q4_K_M Q5_K_M; do
        case $type in F32|F16|BF16) tol=1e-3 ;; *) tol=3e-2 ;; esac
        m=$work/$arch-$type.gguf
        if ! "$synth" models synth --arch "$arch" --shape tiny --type "$type" --seed 9 -q \
                --vocab-from "$shared/data/tokenizer/ggml-vocab-bert-bge.gguf" -o "$m" >/dev/null; then
            bad "$arch $type: synthesize"
            continue
        fi
        # shellcheck disable=SC2086
        if ! "$work/embed_tool" "$m" "$work/e1.f32" 1 $ids 2>"$work/err" ||
           ! "$work/embed_tool" "$m" "$work/e2.f32" 2 $ids 2>>"$work/err"; then
            cat "$work/err"
            bad "$arch $type: engine embeddings"
            continue
        fi
        if cmp -s "$work/e1.f32" "$work/e2.f32"; then
            ok "$arch $type: embeddings identical with 1 and 2 threads"
        else
            bad "$arch $type: embeddings differ between 1 and 2 threads"
        fi
        # shellcheck disable=SC2086
        if ! $py tests/ref/ref_bert.py "$m" "$work/r.f32" $ids; then
            bad "$arch $type: reference"
            continue
        fi
        if out=$($py tests/ref/ref_bert.py compare "$work/e1.f32" "$work/r.f32" $dim $tol); then
            ok "$arch $type: float64 reference: $out"
        else
            bad "$arch $type: float64 reference: $out"
        fi
        [ $tol = 1e-3 ] && continue
        # shellcheck disable=SC2086
        $py tests/ref/ref_bert.py --act-quant "$m" "$work/rq.f32" $ids || {
            bad "$arch $type: reference with activation quantization"; continue; }
        if out=$($py tests/ref/ref_bert.py compare "$work/e1.f32" "$work/rq.f32" $dim 1e-2); then
            ok "$arch $type: reference with the engine's activation rounding: $out"
        else
            bad "$arch $type: reference with the engine's activation rounding: $out"
        fi
    done
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
