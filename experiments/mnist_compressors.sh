#!/usr/bin/env bash
# Every compressor on mnist (the default task: 10 clients, 5 per round, Dirichlet alpha
# 0.5, 20 rounds) x 3 seeds: the uncompressed baseline; top-k (1% and 10%, with and
# without error feedback, a compressed downlink, threshold); min-max quantization (8/4/2/1
# bit); lossless zstd; chains; the field's published methods (fp16, bf16, random-k, QSGD,
# TernGrad, signSGD, EF-signSGD, natural compression, PowerSGD, DGC, STC, EDEN, FetchSGD);
# frozen conv layers from a centrally pretrained checkpoint (against the identity run from
# the same checkpoint); 5 local epochs x 4 rounds; and the per-array wire layout (the
# ablation of the packed one). Re-running skips finished runs, so an interrupted sweep
# resumes. Writes tables and figures to $SWEEP/report. About 45 min on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-results/sweeps/mnist_compressors}
SEEDS=${SEEDS:-0,1,2}
CKPT=results/checkpoints/mnist.pt
run() { python -m fedcomp.run -m hydra.sweep.dir="$SWEEP" seed="$SEEDS" "$@"; }

run compressor=none,topk,topk_down,threshold,quant8,quant4,quant2,quant1,lossless,topk_quant8,topk_quant8_zstd
run compressor=topk compressor.density=0.01,0.1 compressor.error_feedback=false
run compressor=topk compressor.density=0.1
run compressor=fp16,bf16,randomk,qsgd,terngrad,signsgd,efsignsgd,natural,powersgd,powersgd_quant8,dgc,stc,eden,fetchsgd
run compressor=topk wire.layout=arrays
run client.local_epochs=5 federation.num_rounds=4
[ -f "$CKPT" ] || python -m fedcomp.pretrain task=mnist pretrain.output="$CKPT"
run compressor=none,freeze_convs task.checkpoint="$CKPT"
python -m fedcomp.report "$SWEEP" --target 0.9
