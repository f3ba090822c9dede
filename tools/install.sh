#!/usr/bin/env bash
# Install mmseg_cvpt and its stack into the current Python environment.
#
#   bash tools/install.sh          # runtime
#   bash tools/install.sh tests    # runtime + test needs
#
# mmcv 2.1.0 (the newest mmseg 1.2.2 accepts) ships only as source, and its
# setup.py forces -std=c++17 while torch >= 2.6 headers need C++20. A prebuilt
# wheel is used when pip finds one (e.g. PIP_FIND_LINKS=../shared/wheels);
# otherwise mmcv is built here from the registry's source with the standard
# fixed (about 17 minutes on 2 cores, once).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA=${1:-}
PIP="python -m pip"
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
MMCV_VERSION=${MMCV_VERSION:-2.1.0}

python -c "import torch, torchvision" 2>/dev/null || $PIP install $TORCH_SPEC
$PIP install "setuptools<81" wheel

have_mmcv_ops() { python -c "import mmcv, mmcv.ops" 2>/dev/null; }
if ! have_mmcv_ops; then
  if ! $PIP install --only-binary mmcv "mmcv==$MMCV_VERSION"; then
    echo "No mmcv $MMCV_VERSION wheel found: building it from source." >&2
    build=$(mktemp -d)
    $PIP download --no-build-isolation --no-deps --no-binary mmcv \
      -d "$build" "mmcv==$MMCV_VERSION"
    tar -xzf "$build"/mmcv-*.tar.gz -C "$build"
    src=$(find "$build" -maxdepth 1 -type d -name 'mmcv-*' | head -n 1)
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      $PIP install --no-build-isolation "$src"
    rm -rf "$build"
  fi
fi

if [ "$EXTRA" = tests ]; then
  $PIP install --no-build-isolation -e ".[tests]"
else
  $PIP install --no-build-isolation -e .
fi
python -c "import mmseg_cvpt, mmcv.ops, mmseg, mmpretrain, mmdet; print('mmseg_cvpt', mmseg_cvpt.__version__, 'installed')"
