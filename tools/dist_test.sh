#!/usr/bin/env bash
# Distributed testing with torchrun.
#
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py options]
#
# e.g. `... --aug-test` for the multi-scale + flip mIoU. Several machines:
# NNODES, NODE_RANK, MASTER_ADDR and PORT as for dist_train.sh. Without CUDA
# the processes talk over gloo.
set -e
exec bash "$(dirname "$0")/torchrun.sh" test.py "$3" "$1" "$2" "${@:4}"
