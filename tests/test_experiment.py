"""The composition root in-process, in seconds: the real config, a tiny synthetic dataset,
built once into an Experiment; the callbacks group; the task group; a whole tiny run.

(The end-to-end tests run the same paths through `python -m trainer`.)
"""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf, open_dict

from trainer.config.errors import ConfigError
from trainer.data import Splits

LOADS = []  # each TinyDataset.load() call, to show when data is (not) loaded


class TinyDataset:
    """8x8 grey images of 3 classes, made on the spot."""

    def __init__(self, name, val_size, num_classes, input_shape, class_names, samples=256):
        self.name, self.val_size, self.samples = name, val_size, samples
        self.num_classes, self.class_names = num_classes, list(class_names)
        self.input_shape = tuple(input_shape)

    def check(self):
        return self.samples

    def load(self):
        LOADS.append(self.name)
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (self.samples + 64, *self.input_shape), dtype=np.uint8)
        y = rng.integers(0, self.num_classes, self.samples + 64)
        cut, end = self.samples - self.val_size, self.samples
        return Splits(
            x[:cut],
            y[:cut],
            x[cut:end],
            y[cut:end],
            x[end:],
            y[end:],
            source="synthetic://tiny",
            checksum="0" * 16,
        )


def tiny(compose, tmp_path, *overrides):
    """The real `conf/train.yaml` with `overrides`, on TinyDataset, files only."""
    cfg = compose(
        "train",
        ["model=mlp", "sink=[csv]", "trainer.batch_size=32", "trainer.epochs=2", *overrides],
    )
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "run")
        cfg.dataset = OmegaConf.create(
            {
                "_target_": f"{__name__}.TinyDataset",
                "name": "tiny",
                "val_size": 32,
                "num_classes": 3,
                "input_shape": [8, 8, 1],
                "class_names": ["a", "b", "c"],
            }
        )
    return cfg


def test_build_makes_every_object_once_before_any_data_loads(compose, tmp_path):
    from trainer.experiment import build
    from trainer.tasks import Train

    LOADS.clear()
    cfg = tiny(compose, tmp_path, "schedule=cosine", "trainer.test_every=0.5ep")
    experiment = build(cfg, {"model": "mlp"})
    assert LOADS == []  # nothing loaded yet
    assert isinstance(experiment.task, Train)
    # 224 training images in batches of 32: 7 steps per epoch, 14 in all (1dur).
    assert (experiment.length.steps_per_epoch, experiment.length.run_steps) == (7, 14)
    assert experiment.schedule.get_config()["decay_steps"] == 14
    rate = experiment.optimizer.get_config()["learning_rate"]  # the schedule, serialised
    assert rate["config"] == experiment.schedule.get_config()
    assert tuple(experiment.model.input_shape) == (None, 8, 8, 1)  # from the dataset
    assert experiment.model.output_shape == (None, 3)
    assert [type(spec).__name__ for spec in experiment.callbacks] == [
        "EpochMetrics",
        "TestCurve",
        "BestCheckpoint",
        "EarlyStopping",
        "ResumeCheckpoint",
    ]
    assert experiment.callbacks[1].every == 4  # 0.5ep of 7 steps, rounded
    assert experiment.kept.policy == "all"
    with pytest.raises(AttributeError):
        experiment.schedule = None  # frozen: what training gets is what was built


def test_a_bad_callback_length_is_named_before_any_data_loads(compose, tmp_path):
    from trainer.experiment import build

    LOADS.clear()
    with pytest.raises(ConfigError, match=r"trainer\.test_every must be a whole number"):
        build(tiny(compose, tmp_path, "trainer.test_every=2weeks"))
    assert LOADS == []


def test_the_callbacks_group_picks_which_callbacks_a_run_has(compose, tmp_path):
    from trainer.experiment import build

    cfg = tiny(compose, tmp_path, "callbacks=[epoch_metrics]")
    assert [type(s).__name__ for s in build(cfg).callbacks] == ["EpochMetrics"]


def test_mode_is_the_task_group_under_its_older_name(compose, tmp_path):
    from trainer.experiment import build
    from trainer.tasks import LrFind

    for override in ("task=lr_find", "mode=lr_find"):
        experiment = build(tiny(compose, tmp_path, override))
        assert isinstance(experiment.task, LrFind)
        assert experiment.schedule is None  # the range test builds its own rates


def test_an_auto_rate_leaves_the_schedule_to_the_range_test(compose, tmp_path):
    from trainer.experiment import build

    experiment = build(tiny(compose, tmp_path, "schedule=one_cycle", "schedule.max_lr=auto"))
    assert experiment.auto_keys == ("max_lr",)
    assert experiment.schedule is None and experiment.optimizer is None
    trained = experiment.with_schedule(256, {"max_lr": 0.02})
    assert trained.schedule.get_config()["max_lr"] == pytest.approx(0.02)
    assert trained.model is experiment.model  # the same model, still untrained
    assert experiment.cfg.schedule.max_lr == "auto"  # the original is left as it was


def test_a_tiny_run_trains_every_step_and_tells_how_it_ended(compose, tmp_path):
    from trainer.experiment import build
    from trainer.tracking.run import Ending

    LOADS.clear()
    ending = Ending()
    cfg = tiny(compose, tmp_path, "trainer.checkpoint_every=3", "optimized_metric=val/loss")
    experiment = build(cfg, {"model": "mlp", "schedule": "cosine"})
    results = experiment.task.run(experiment, ending=ending)
    assert LOADS == ["tiny"]  # loaded once
    assert ending.status == "FINISHED"
    assert results["trained_steps"] == 14
    assert results["run_name"].startswith("mlp-tiny-cosine")
    assert np.isfinite(results["val/loss"]) and 0 <= results["test/accuracy"] <= 1
    steps = (tmp_path / "run" / "steps.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[0]) for line in steps] == list(range(14))
    assert not (tmp_path / "run" / "resume").exists()  # a finished run keeps no checkpoint
