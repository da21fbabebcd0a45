#!/usr/bin/env bash
# Communicate less often: E local epochs x R rounds at equal local compute (E x R = 20)
# on mnist, 3 seeds. Fewer rounds move proportionally fewer bytes; the accuracy column
# shows what client drift costs (the lesson's warning about too many local epochs).
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-results/sweeps/local_epochs}
SEEDS=${SEEDS:-0,1,2}
for pair in "1 20" "2 10" "5 4" "10 2"; do
  set -- $pair
  python -m fedcomp.run -m hydra.sweep.dir="$SWEEP" seed="$SEEDS" client.local_epochs="$1" federation.num_rounds="$2"
done
python -m fedcomp.report "$SWEEP" --target-accuracy 0.9
