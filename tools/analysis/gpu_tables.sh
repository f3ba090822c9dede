#!/usr/bin/env bash
# The GPU tables of docs/performance.md, on one CUDA GPU (run where one is
# lent):
#
#   bash tools/analysis/gpu_tables.sh [OUT]
#
# ViT-B/16 at 512x512 and DINOv2-B/14 at 518x518 (the multiple of 14 next
# to 512), P=200, batch 8: the train step and inference of the frozen ViT,
# VPT-deep (both forms), CVPT, BPT, DA-VPT, LoRA, AdaptFormer and Rein,
# eager and compiled (inductor), under bf16 autocast; CUDA-event timing
# and the allocator's peak memory (tools/analysis/benchmark.py). Then the
# frozen ViT and CVPT in float32, eager, for the bf16 speed-up.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-work_dirs/gpu_tables}
METHODS="vpt_reference vpt cvpt bpt davpt lora adaptformer rein"
COMMON="--prompts 0 200 --batch 8 --repeats 5 --best-of 2 --device cuda"
python -c "import torch; print(torch.cuda.get_device_name())"
python tools/analysis/benchmark.py --arch vit_b16 --sizes 512 $COMMON \
  --methods $METHODS --dtype bf16 --compile --out "$OUT/vit_b16_bf16"
python tools/analysis/benchmark.py --arch dinov2_b14 --sizes 518 $COMMON \
  --methods $METHODS --dtype bf16 --compile --out "$OUT/dinov2_b14_bf16"
python tools/analysis/benchmark.py --arch vit_b16 --sizes 512 $COMMON \
  --methods cvpt --dtype float32 --out "$OUT/vit_b16_float32"
