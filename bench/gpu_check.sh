#!/usr/bin/env bash
# bench/gpu_check.py on the lent GPU machine (or here, on the CPU, with --quick): lrlab on JAX,
# speed against bare Keras, time to 99.2 % MNIST accuracy, 1 to 8 trials sharing the GPU.
#
#   bash bench/gpu_wheels.sh && mkdir -p data && cp -r ../shared/datasets/mnist data/  # here
#   device run, carry [".whl", "data"]:  bash bench/gpu_check.sh
#   bash bench/gpu_check.sh --quick                                                  # CPU
#
# There: Python 3.12 with JAX (CUDA), no TensorFlow, no network. The wheels in .whl/ (ignored by
# git) are installed to /tmp/site; lrlab runs from this checkout (its conf/ importable as
# lrlab_conf through a link); MNIST is read from ./data/mnist, else ../shared/datasets.
# Results: $OUT/gpu_check.json where the device tool gives $OUT, else bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
site=/tmp/lrlab-gpu-site
mkdir -p "$site"
# The wheels only where what they hold is missing (this checkout's own venv has it all).
if ! python3 -c 'import keras, hydra, omegaconf, mlflow' 2> /dev/null &&
    compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .whl/*.whl
fi
ln -sfn "$root/conf" "$site/lrlab_conf"
export PYTHONPATH="$site:$root${PYTHONPATH:+:$PYTHONPATH}"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
if [ -z "${LRLAB_DATA_DIR:-}" ]; then
    if [ -d data/mnist ]; then LRLAB_DATA_DIR="$root/data"; else LRLAB_DATA_DIR="$root/../shared/datasets"; fi
    export LRLAB_DATA_DIR
fi
out="${OUT:-$root/bench/results}"
python3 -c 'import jax, keras, hydra, mlflow; print("jax", jax.__version__, jax.devices())'
timeout 480 python3 bench/gpu_check.py --out "$out/gpu_check.json" "$@"
