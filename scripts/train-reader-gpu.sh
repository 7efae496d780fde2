#!/usr/bin/env bash
# Trains the plate reader on a GPU machine that has JAX (with CUDA) but neither the data set, the
# fonts nor network access. Beforehand, on a machine that has them:
#   platestream train pack --crops ../shared/datasets/plate-crops --out .gpu
# and, when that machine lacks platestream's run-time dependencies, their wheels in .whl/.
# Usage: scripts/train-reader-gpu.sh OUT [`train reader` options of the long run]
#   LONG_SECONDS bounds the long run (its provisional model is exported at each checkpoint);
#   RECIPE_OPTIONS are added to the recipe run (for a quick try of this script).
set -euo pipefail
out=${1:?usage: $0 OUT [options]}
shift
wheels=${WHEELS:-.whl}
if compgen -G "$wheels/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export PLATESTREAM_MODEL_DIR=${PLATESTREAM_MODEL_DIR:-$PWD/.gpu/models}  # the packed plate detector (--scene-views)
train=(python3 -c 'from platestream.cli import main; main()' train reader --crops .gpu/crops --fonts .gpu/fonts
  --cache /tmp/platestream-cache)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no GPU"
nproc
# 1. a longer run with more rendered plates; a provisional model lands in OUT/long at each checkpoint
timeout "${LONG_SECONDS:-86400}" "${train[@]}" --out "$out/long" --checkpoint-every 2000 "$@" || echo "long run stopped: $?"
rm -f "$out/long/checkpoint.pkl" "$out/long/checkpoint.partial"
[ -n "${SKIP_RECIPE:-}" ] && exit 0
# 2. the default recipe, the same command as on two CPU cores, for its timing here
mkdir -p "$out/recipe"
"${train[@]}" --out /tmp/recipe ${RECIPE_OPTIONS:-}
cp /tmp/recipe/metrics.json /tmp/recipe/plate-reader.onnx "$out/recipe/"
