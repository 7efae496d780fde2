#!/bin/sh
# The install steps of every platestream image, in one place: the Dockerfiles run this script in
# their build stage, and tests/test_wheel.py replays it into a fresh virtual environment.
#
#   install.sh SOURCE VENV EXTRAS [MODEL_DIR]
#
# Builds the wheel from SOURCE (through its sdist, as a release would), installs it with EXTRAS into
# a new virtual environment VENV, and, given MODEL_DIR, converts the engine's models into it.
set -eu

source_dir=$1
venv=$2
extras=$3
model_dir=${4:-}
python=${PYTHON:-python3}

# DIST_DIR keeps the sdist and the wheel (the tests read them); otherwise they go once installed.
dist=${DIST_DIR:-$(mktemp -d)}
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip build
"$venv/bin/python" -m build --quiet --outdir "$dist" "$source_dir" >/dev/null
# The build tool leaves the venv: only platestream and its dependencies stay.
"$venv/bin/python" -m pip uninstall --quiet --yes build pyproject_hooks
set -- "$dist"/platestream-*.whl
"$venv/bin/python" -m pip install --quiet "$1[$extras]"
[ -n "${DIST_DIR:-}" ] || rm -rf "$dist"

if [ -n "$model_dir" ]; then
  PLATESTREAM_MODEL_DIR=$model_dir "$venv/bin/platestream" models fetch
  chmod -R a+rX "$model_dir"
fi
