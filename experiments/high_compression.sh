#!/usr/bin/env bash
# The high-compression regime (conf/experiment/high_compression.yaml): McMahan et al.'s
# CNN on mnist, 60 rounds, 3 seeds: the identity baseline, the winner (STC both ways) and
# the runner-ups (top-1% + 8-bit both ways; DGC up with a top-0.5% downlink). Reports
# uplink and total compression on payload and wire, and accuracy as the mean of the last
# 5 rounds with 95% intervals. Re-running skips finished runs. About 50 min on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-results/sweeps/high_compression}
SEEDS=${SEEDS:-0,1,2}
python -m fedcomp.run -m hydra.sweep.dir="$SWEEP" experiment=high_compression seed="$SEEDS" \
  compressor=none,stc,topk_quant8_down,dgc_down
python -m fedcomp.report "$SWEEP" --width page
