#!/usr/bin/env bash
# The bandwidth lesson: the formula (212 MB by the lesson's rounding, 225,083,392 B exact)
# and a measured Flower simulation of Pythia-14M, 2 clients, 1 round. About 1 minute.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/experiments/lesson_bandwidth}
python -m fedcomp.formula --task pythia14m --num-clients 2 --fraction-fit 1.0 --num-rounds 1
python -m fedcomp.run experiment=lesson_bandwidth hydra.run.dir="$OUT/run" resume=false
python -m fedcomp.report "$OUT" --metric loss
