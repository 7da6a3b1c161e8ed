#!/usr/bin/env bash
# The wheels bench/gpu_check.sh needs on the lent GPU machine (Python 3.12 with JAX, PyTorch,
# NumPy, Matplotlib, TensorBoard and more, but no Keras, Hydra or MLflow, and no network),
# into .whl/ (ignored by git; the device tool carries it with `carry: [".whl"]`).
#
#   bash bench/gpu_wheels.sh            # here, with a network to PyPI
#
# pip resolves lrlab's run-time needs for that Python and platform; the wheels of packages the
# machine's image already holds (.library/device/KINDS.md, "Python packages already there")
# are left out, so that a second copy never shadows the one its CUDA build was made with.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.whl
rm -rf "$out" && mkdir -p "$out"
present="absl-py accelerate aiohttp anyio attrs certifi charset-normalizer chex click \
cloudpickle contourpy cycler filelock flatbuffers fonttools frozenlist fsspec grpcio h11 h5py \
httpcore httpx idna jax jaxlib jinja2 joblib kiwisolver markdown markdown-it-py markupsafe \
matplotlib mdurl ml-dtypes msgpack multidict networkx numpy opt-einsum optax packaging pandas \
pillow pip protobuf psutil pyarrow pygments pyparsing python-dateutil pyyaml requests rich \
scikit-learn scipy setuptools six sympy tensorboard tensorboard-data-server threadpoolctl torch \
tqdm typing-extensions urllib3 werkzeug wheel yarl zipp"
platforms=()
for n in 17 27 28; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform any)
# Hydra's parser runtime is published as a source distribution only (pure Python):
# built here first, then found by the download below.
python3 -m pip wheel --quiet --no-deps -w "$out" "antlr4-python3-runtime==4.9.3"
python3 -m pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$out" --find-links "$out" "keras==3.15.*" "hydra-core==1.3.*" "omegaconf==2.3.*" \
    "mlflow-skinny==3.18.*" "sqlalchemy>=2" "alembic" 2>&1 | grep -v "^WARNING: Location" || true
for wheel in "$out"/*.whl; do
    name="$(basename "$wheel" | cut -d- -f1 | tr '_' '-' | tr '[:upper:]' '[:lower:]')"
    for have in $present; do
        if [ "$name" = "$have" ]; then rm "$wheel"; break; fi
    done
done
du -sh "$out"
ls "$out"
