#!/usr/bin/env bash
# LoRA adapters (Hugging Face PEFT) against full fine-tuning and frozen embeddings on
# Pythia-14M, all from the same centrally pretrained checkpoint, same rounds and seed:
# full fine-tune (compressor=none), freeze_embeddings, lora r = 4, 8, 16 (A and B averaged
# separately), FFA-LoRA (A frozen, only B sent) and lora + quant8. Only the adapters travel
# (both ways); the dense baseline stays the full model, so the report shows what adapters
# save against the lesson's formula. Reports uplink/downlink payload and wire bytes and
# perplexity (mean of the last report.final_window rounds) to $SWEEP/report.
# About 25 min on a 2-core CPU; re-running skips finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-results/sweeps/pythia_lora}
ROUNDS=${ROUNDS:-6}
CKPT=results/checkpoints/pythia14m.pt  # the checkpoint experiments/pythia_freeze.sh uses
[ -f "$CKPT" ] || python -m fedcomp.pretrain task=pythia14m pretrain.steps=50 pretrain.output="$CKPT"
# Run directories are named by hydra.sweep.subdir: the default (every override) would hold
# the checkpoint's path, slashes included, and nest each run under results/checkpoints/.
run() {
  python -m fedcomp.run -m hydra.sweep.dir="$SWEEP" task=pythia14m task.checkpoint="$CKPT" \
    federation.num_clients=4 federation.fraction_fit=0.5 federation.num_rounds="$ROUNDS" \
    report.final_window=3 seed=0 "$@"
}
run 'hydra.sweep.subdir=${compressor_name}' compressor=none,freeze_embeddings,lora_ffa,lora_quant8
run 'hydra.sweep.subdir=lora_r${compressor.r}' compressor=lora compressor.r=4,8,16
python -m fedcomp.report "$SWEEP" --metric perplexity
