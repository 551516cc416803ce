#!/bin/bash
# run.sh - the engine's logits against an independent NumPy reference.
#
# For each supported weight type a tiny random Llama GGUF is synthesized
# (`kanoa-mlops models synth --shape tiny`: dim 256, 2 layers, 4 heads / 2 KV
# heads, gpt-2 vocab, llama3 rope_freqs; Q8_0 untied, the rest tied), the
# engine's last-position logits for a fixed prompt are dumped with 1 and 2
# threads (which must be bit-identical), and tests/ref/reference.py computes
# the same logits from the file with its own GGUF parser and dequantizers in
# float64. Tolerances (max |diff| as a fraction of the logit range; the rule
# is in docs/engine.md "Reference tolerances"): F32/F16/BF16 1e-3 (the
# engine keeps these activations in f32); quantized types 3e-2 against the
# plain float64 reference, because the engine quantizes activations to
# Q8_0/Q8_K (8-bit, per 32/256 block) before the integer dot products
# (measured: 0.5-0.9%), and 1e-2 against the reference run with --act-quant,
# which rounds the matmul inputs the same way: usually ~1e-7, but a
# float-order difference of 1e-7 can flip one f16 KV or 8-bit activation
# rounding, and these random 2-layer models amplify one flip to up to ~0.8%.
# Then the embedding (run_embed.sh) and Gemma 3 (run_gemma.sh) suites.
set -u
# shellcheck source=tests/ref/lib.sh
source "$(dirname "$0")/lib.sh"
export KM_SHARED=$shared
ref_build_tool ref_tool

ids="464 2068 7586 21831 18045 625 262 16931 3290 13 198 40 1101 257 1049"
for type in F32 F16 BF16 Q8_0 Q4_0 Q6_K Q4_K_M Q5_K_M; do
    model=$work/$type.gguf
    tie=--tied
    [ "$type" = Q8_0 ] && tie=--untied
    ref_synth "$type" --arch llama --shape tiny --type "$type" $tie --rope-scaling llama3 \
        --seed 5 --vocab-from "$shared/data/tokenizer/ggml-vocab-gpt-2.gguf" || continue
    ref_check "$type logits" "$type" 1e-2 "" tests/ref/reference.py "$work/ref_tool" logits "$model"
done
ref_sub run_embed.sh
ref_sub run_gemma.sh
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
