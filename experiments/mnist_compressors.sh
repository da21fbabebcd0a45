#!/usr/bin/env bash
# Compressor comparison on mnist (10 clients, 5 per round, Dirichlet alpha 0.5, 10 rounds)
# x 3 seeds: identity; top-k at 1% and 10% with and without error feedback; 8- and 4-bit
# quantization; a chain (top-k 1% + 8-bit); frozen conv layers from a centrally
# pretrained checkpoint (with the identity run from the same checkpoint as its baseline);
# 5 local epochs x 2 rounds (same local compute as 1 x 10). Re-running skips finished
# runs, so an interrupted sweep resumes. Writes tables and figures to $SWEEP/report.
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-results/sweeps/mnist_compressors}
SEEDS=${SEEDS:-0,1,2}
CKPT=results/checkpoints/mnist.pt
run() { python -m fedcomp.run -m hydra.sweep.dir="$SWEEP" federation.num_rounds=10 seed="$SEEDS" "$@"; }

run compressor=none,quant8,quant4,topk_quant8
run compressor=topk compressor.density=0.01,0.1 compressor.error_feedback=true,false
run client.local_epochs=5 federation.num_rounds=2
[ -f "$CKPT" ] || python -m fedcomp.pretrain task=mnist pretrain.output="$CKPT"
run compressor=none,freeze_convs task.checkpoint="$CKPT"
python -m fedcomp.report "$SWEEP" --target-accuracy 0.9
