#!/usr/bin/env bash
# Distributed training with torchrun.
#
#   bash tools/dist_train.sh CONFIG GPUS [tools/train.py options]
#
# Several machines: run it on each with NNODES, NODE_RANK, MASTER_ADDR and
# PORT set (the same MASTER_ADDR / PORT everywhere). Without CUDA the
# processes talk over gloo, so `bash tools/dist_train.sh CONFIG 2` also runs
# on a laptop (GPUS is then the number of processes).
set -e
exec bash "$(dirname "$0")/torchrun.sh" train.py "$2" "$1" "${@:3}"
