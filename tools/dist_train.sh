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
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
${PYTHON:-python} -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
