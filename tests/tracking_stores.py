"""Read back what a run left in MLflow and TensorBoard, as a user's tools would."""

from pathlib import Path

import numpy


def mlflow_runs(uri, experiment="lrlab"):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], order_by=["start_time ASC"])


def assert_logged_model(client, run, keras_file, step, name="model"):
    """The run's one logged model `name`, READY, at `step`, with a signature and an input
    example, predicting on it what `keras_file` predicts."""
    import keras
    import mlflow.artifacts
    import mlflow.keras
    from mlflow.models import Model

    import trainer.recording  # noqa: F401  (model.keras holds lrlab's model class)

    (model,) = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    assert model.name == name and str(model.status) == "READY"
    assert [
        (o.model_id, o.step) for o in client.get_run(run.info.run_id).outputs.model_outputs
    ] == [(model.model_id, step)]
    info = Model.load(f"models:/{model.model_id}")
    assert info.signature is not None and "keras" in info.flavors
    example = info.load_input_example(mlflow.artifacts.download_artifacts(model.artifact_location))
    served = mlflow.keras.load_model(f"models:/{model.model_id}")
    numpy.testing.assert_allclose(
        served.predict(example, verbose=0),
        keras.models.load_model(keras_file, compile=False).predict(example, verbose=0),
        rtol=1e-5,
        atol=1e-6,
    )


def mlflow_history(client, run, key):
    """[(step, value)] of one metric, in step order (all points, no sampling)."""
    points = client.get_metric_history(run.info.run_id, key)
    return sorted((p.step, p.value) for p in points)


def tensorboard_scalars(run_dir):
    """{tag: [(step, value)]} from the run's event files, keeping every point."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir) / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def tensorboard_hparams(run_dir):
    """{name: value} of the run's HParams session, as TensorBoard's HParams plugin reads it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    acc = EventAccumulator(str(Path(run_dir) / "tensorboard"))
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    info = metadata.parse_session_start_info_plugin_data(content)
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in info.hparams.items()}


def tensorboard_text(run_dir, tag):
    """The text summary `tag` (TensorBoard's Text tab) of the run's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir) / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    (event,) = acc.Tensors(tag)
    return event.tensor_proto.string_val[0].decode()
