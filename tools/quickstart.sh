#!/usr/bin/env bash
# The embedded demo, end to end, on a CPU:
#
#   bash tools/quickstart.sh
#
# 1. installs what is missing (tools/install.sh: pip install -e . and its
#    requirements; pip honours PIP_FIND_LINKS, e.g. a folder of wheels),
# 2. generates a small synthetic data set in the ADE20K layout
#    (tools/misc/make_ade20k_demo.py -> data/ade20k_demo),
# 3. trains CVPT with configs/cvpt/upernet_vittiny_ade20k_demo.py (the real
#    ADE20K config, shrunk) for 300 iterations: prompts and heads on a
#    frozen ViT pretrained on another task (pretrain/vit_tiny_demo_mmseg.pth,
#    shipped; tools/misc/pretrain_tiny_vit.py regenerates it),
# 4. evaluates it single-scale and with --aug-test (6 scales x 2 flips),
# 5. trains the head-only reference (configs/baseline/..._demo.py: the same
#    frozen ViT, no prompts), evaluated single-scale at the end of training,
# 6. prints the mIoUs next to the mIoU of a most-frequent-class predictor
#    and where the checkpoint and the logs are.
#
# About 2.5 minutes on 2 idle cores once installed. WORK_DIR and DATA_ROOT
# change where the outputs and the data go.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
CONFIG=configs/cvpt/upernet_vittiny_ade20k_demo.py
HEAD_ONLY_CONFIG=configs/baseline/upernet_vittiny_ade20k_demo.py
DATA_ROOT=${DATA_ROOT:-data/ade20k_demo}
WORK_DIR=${WORK_DIR:-work_dirs/quickstart}
SECONDS=0

step() { echo; echo "==> $*"; }

step "Checking the installation of $(command -v "$PYTHON")"
if ! $PYTHON - <<'EOF'
import os, sys
import mmcv.ops, mmseg, mmpretrain  # noqa: F401
import mmseg_cvpt
here = os.path.realpath('mmseg_cvpt')
found = os.path.realpath(os.path.dirname(mmseg_cvpt.__file__))
sys.exit(0 if found == here else f'mmseg_cvpt is imported from {found}')
EOF
then
  step "Installing mmseg_cvpt and its requirements (tools/install.sh)"
  bash tools/install.sh
fi

step "Generating the demo data set in $DATA_ROOT"
if [ ! -f "$DATA_ROOT/majority_baseline.json" ]; then
  $PYTHON tools/misc/make_ade20k_demo.py "$DATA_ROOT"
else
  echo "found, kept"
fi
DATA_OPTS="train_dataloader.dataset.data_root=$DATA_ROOT \
val_dataloader.dataset.data_root=$DATA_ROOT \
test_dataloader.dataset.data_root=$DATA_ROOT"

step "Training CVPT on it ($CONFIG)"
rm -rf "$WORK_DIR"
mkdir -p "$WORK_DIR"
# shellcheck disable=SC2086
$PYTHON tools/train.py "$CONFIG" --work-dir "$WORK_DIR/train" \
  --cfg-options $DATA_OPTS 2>&1 | tee "$WORK_DIR/train.log" \
  | grep --line-buffered -E 'Iter\(train\)|mIoU:|Error' || true
CKPT=$(cat "$WORK_DIR/train/last_checkpoint" 2>/dev/null || true)
if [ -z "$CKPT" ] || [ ! -f "$CKPT" ]; then
  echo "Training failed; see $WORK_DIR/train.log" >&2
  exit 1
fi

evaluate() {  # evaluate NAME [test.py options]; prints the mIoU
  local name=$1
  shift
  # shellcheck disable=SC2086
  $PYTHON tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR/$name" \
    --cfg-options $DATA_OPTS "$@" > "$WORK_DIR/$name.log" 2>&1 || {
    echo "Evaluation failed; see $WORK_DIR/$name.log" >&2
    exit 1
  }
  grep -o 'mIoU: [0-9.]*' "$WORK_DIR/$name.log" | tail -n 1 | cut -d' ' -f2
}
step "Evaluating single-scale"
SS=$(evaluate test_single_scale)
echo "mIoU $SS"
step "Evaluating with --aug-test (multi-scale 0.5-1.75 + flip)"
MS=$(evaluate test_aug --aug-test)
grep -o 'merged [0-9]* views of [0-9]* images.*' \
  "$WORK_DIR/test_aug.log" | tail -n 1
echo "mIoU $MS"

step "Training the head-only reference ($HEAD_ONLY_CONFIG)"
# shellcheck disable=SC2086
$PYTHON tools/train.py "$HEAD_ONLY_CONFIG" --work-dir "$WORK_DIR/head_only" \
  --cfg-options $DATA_OPTS > "$WORK_DIR/head_only.log" 2>&1 || {
  echo "Head-only training failed; see $WORK_DIR/head_only.log" >&2
  exit 1
}
HEAD=$(grep -o 'mIoU: [0-9.]*' "$WORK_DIR/head_only.log" | tail -n 1 \
  | cut -d' ' -f2)
echo "mIoU $HEAD"

BASE=$($PYTHON -c "import json, sys; \
print('%.2f' % json.load(open(sys.argv[1]))['mIoU'])" \
  "$DATA_ROOT/majority_baseline.json")
cat <<EOF

==================== CVPT quickstart ($SECONDS s) ====================
frozen pretrained ViT + CVPT prompts and heads, validation mIoU
  single-scale:                             $SS
  --aug-test (12 views):                    $MS
head-only (same frozen ViT, no prompts):    $HEAD
most-frequent-class predictor, mIoU:        $BASE
checkpoint (prompts and heads only):  $CKPT
logs:        $WORK_DIR/train.log, $WORK_DIR/test_single_scale.log,
             $WORK_DIR/test_aug.log, $WORK_DIR/head_only.log
             (full runner logs under $WORK_DIR/*/)
EOF
$PYTHON -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) \
else 'The demo model did not beat the most-frequent-class predictor')" \
  "$SS" "$BASE"
