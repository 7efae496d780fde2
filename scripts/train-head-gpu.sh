#!/usr/bin/env bash
# Tunes PP-OCR's whole reader with the plate head (`platestream train head --whole`) on a GPU
# machine that has JAX with CUDA (and ONNX Runtime, OpenCV, onnx, tqdm, click) but neither the data
# set, the fonts, platestream's other dependencies nor network access. A training step of the whole
# reader takes 4-10 s per 32 lines on two CPU cores: this recipe is a GPU job.
#
#   scripts/train-head-gpu.sh prepare            here, with the data set beside the checkout: packs
#                                                 .gpu/ (crops, fonts, plate detector; ~41 MB) and
#                                                 downloads the missing wheels into .whl/ (~37 MB)
#   scripts/train-head-gpu.sh install            there, carrying .whl: the wheels into .site/
#   scripts/train-head-gpu.sh train OUT [opts]   there, carrying .gpu: cut the lines, train, export;
#                                                 OUT gets plate-head.onnx (about 12.5 MB: the
#                                                 reader's tuned copy), its SHA-256, metrics.json
#                                                 and the log
#
# .gpu/ and .whl/ together are more than one call may carry (64 MiB with the repository), so the
# wheels travel first; .site/ stays on the warm machine for the next call. [opts] are `train head`
# options, e.g. --steps 2000 --batch 128 --views 4 --rendered 8000.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
wheels=(kafka-python crc32c fastavro structlog pydantic pydantic-core annotated-types typing-inspection
  pydantic-settings python-dotenv tenacity rapidocr colorlog omegaconf antlr4-python3-runtime pyclipper shapely)

case "${1:-}" in
prepare)
  crops=${CROPS:-../shared/datasets/plate-crops}
  platestream train pack --crops "$crops" --out .gpu
  rm -rf .whl && mkdir -p .whl
  for name in "${wheels[@]}"; do
    version=$(python3 -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$name==$version"
  done
  du -sh .gpu .whl
  ;;
install)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*.whl
  PYTHONPATH=.site:$here python3 -c "import rapidocr, structlog, pydantic_settings, kafka, fastavro; print('installed')"
  ;;
train)
  out=${2:?usage: $0 train OUT [train head options]}
  shift 2
  mkdir -p "$out"
  export PYTHONPATH=$here/.site:$here PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
  export PLATESTREAM_MODEL_DIR=$here/.gpu/models  # the packed plate detector: nothing is fetched there
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no GPU"
  python3 -c "import jax; print('JAX on', jax.default_backend(), jax.devices())"
  set -o pipefail
  python3 -c 'from platestream.cli import main; main()' train head --whole --crops .gpu/crops \
    --fonts .gpu/fonts --out /tmp/head-whole --workers "$(nproc)" "$@" 2>&1 | tee "$out/train.log"
  cp /tmp/head-whole/metrics.json "$out/"
  cp /tmp/head-whole/plate-head.onnx "$out/"
  sha256sum /tmp/head-whole/plate-head.onnx | tee "$out/plate-head.onnx.sha256"
  ;;
*)
  sed -n '2,19p' "$0"
  exit 2
  ;;
esac
