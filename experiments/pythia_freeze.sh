#!/usr/bin/env bash
# Frozen pretrained layers on Pythia-14M: pretrain centrally on a disjoint slice of the
# corpus, then federate with the input embedding and output head frozen (1,189,888 of
# 14,067,712 parameters sent: -91.5% per message), against the identity run from the
# same checkpoint. Reports perplexity per round.
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-results/sweeps/pythia_freeze}
CKPT=results/checkpoints/pythia14m.pt
[ -f "$CKPT" ] || python -m fedcomp.pretrain task=pythia14m pretrain.steps=50 pretrain.output="$CKPT"
python -m fedcomp.run -m hydra.sweep.dir="$SWEEP" task=pythia14m task.checkpoint="$CKPT" \
  compressor=none,freeze_embeddings federation.num_clients=4 federation.fraction_fit=0.5 \
  federation.num_rounds=3 seed=0
python -m fedcomp.report "$SWEEP" --metric perplexity
