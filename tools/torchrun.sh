#!/usr/bin/env bash
# Start SCRIPT (a tool of this folder) in NPROC processes with torchrun:
#
#   bash tools/torchrun.sh SCRIPT NPROC [SCRIPT arguments]
#
# Used by dist_train.sh and dist_test.sh. Several machines: run it on each
# with NNODES, NODE_RANK, MASTER_ADDR and PORT set (the same MASTER_ADDR /
# PORT everywhere). Without CUDA the processes talk over gloo.
set -e
TOOLS=$(dirname "$0")
SCRIPT=$1
NPROC=$2
PYTHONPATH="$TOOLS/..":$PYTHONPATH \
${PYTHON:-python} -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROC" \
    --master_port="${PORT:-29500}" \
    "$TOOLS/$SCRIPT" "${@:3}" --launcher pytorch
