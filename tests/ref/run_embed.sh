#!/bin/bash
# run_embed.sh - the engine's embeddings against the NumPy reference
# (tests/ref/ref_bert.py), run by tests/ref/run.sh.
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
# shellcheck source=tests/ref/lib.sh
source "$(dirname "$0")/lib.sh"
ref_build_tool embed_tool
# [CLS] hello world [SEP] -- [CLS] the quick brown fox ... [SEP] -- [CLS] a [SEP]
ids="101 7592 2088 102 -- 101 1996 4248 2829 4419 14523 2058 1996 13971 3899 1012 102 -- 101 1037 102"
for arch in bert nomic-bert; do
    case $arch in bert) dim=128 ;; *) dim=256 ;; esac
    for type in F32 F16 BF16 Q8_0 Q4_0 Q6_K Q4_K_M Q5_K_M; do
        model=$work/$arch-$type.gguf
        ref_synth "$arch $type" --arch "$arch" --shape tiny --type "$type" --seed 9 \
            --vocab-from "$shared/data/tokenizer/ggml-vocab-bert-bge.gguf" || continue
        ref_check "$arch $type embeddings" "$type" 1e-2 "$dim" tests/ref/ref_bert.py \
            "$work/embed_tool" "$model"
    done
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
