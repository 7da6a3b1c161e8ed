"""A trained model in MLflow's Keras format, for the MLflow sink to log as an MLflow model.

MLflow's own `mlflow.keras.log_model` would write to the store from the training process,
past the sink's spool (a store that is away would hold training up, or lose the model): the
folder is made here, next to `model.keras`, and the sink uploads it in order with the rest.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

FOLDER = "mlflow_model"  # in the run folder, beside model.keras


def requirements():
    """The pip requirements of the saved model, pinned to what is installed.

    Given rather than inferred: MLflow infers them by loading the model in a fresh
    process, 7.3 s for the MNIST CNN here against 0.03 s for the whole save with them given.
    """
    import keras

    backend = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[keras.backend.backend()]
    return [
        f"{name}=={importlib.metadata.version(name)}"
        for name in ("mlflow", "keras", "numpy", backend)
    ]


def mlflow_format(model, example, folder):
    """Save `model` for inference in MLflow's Keras format in `folder` (replaced if there),
    with its signature (inferred from `example`, a few inputs, and the model's outputs on
    them) and `example` as its input example; returns the folder.

    Its layers and weights only, as a plain functional model: it loads with Keras alone
    (`mlflow.keras.load_model`, `mlflow models serve`), where `model.keras` also holds the
    optimizer, whose schedule is one of lrlab's classes, to train on with lrlab.
    """
    import keras
    import mlflow.keras
    import numpy as np
    from mlflow.models import infer_signature

    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)  # MLflow's Keras 3 flavor writes the example before the folder
    plain = keras.Model(model.inputs, model.outputs, name=model.name)
    example = np.asarray(example)
    outputs = np.asarray(plain.predict(example, verbose=0))
    mlflow.keras.save_model(
        plain,
        str(folder),
        signature=infer_signature(example, outputs),
        input_example=example,
        pip_requirements=requirements(),
    )
    return folder
