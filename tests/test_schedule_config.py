"""From composed config to schedule: lengths with units, rates from the optimizer, config errors."""

import pytest

import schedules as S
from tests.project import SCHEDULE_NAMES, compose_config
from trainer.config.build import build_schedule, from_config, resolve_lengths
from trainer.config.errors import ConfigError
from trainer.config.lengths import to_steps


def build(overrides, steps_per_epoch=100, run_steps=1000, config="preview"):
    cfg = compose_config(config, overrides)
    return from_config(cfg, steps_per_epoch=steps_per_epoch, run_steps=run_steps)


@pytest.mark.parametrize(
    "value,steps",
    [(7, 7), (1e3, 1000), ("2ep", 200), ("1.5ep", 150), ("0.005ep", 0), ("0.3dur", 300)],
)
def test_a_length_is_steps_or_a_string_with_its_unit(value, steps):
    assert to_steps("schedule.decay_steps", value, steps_per_epoch=100, span=1000) == steps


@pytest.mark.parametrize("value", ["3weeks", "-1ep", "ep", "1.5", "2 epochs", 2.5, None, True])
def test_a_malformed_length_names_the_key_and_the_forms(value):
    with pytest.raises(ConfigError) as err:
        to_steps("schedule.step_size", value, steps_per_epoch=100, span=1000)
    message = str(err.value)
    assert "schedule.step_size" in message and "'<x>ep' (epochs)" in message
    assert "fix:" in message


def test_every_length_key_takes_units_and_lists_take_them_per_item():
    sgdr = build(
        [
            "schedule=sgdr",
            "schedule.first_cycle_steps=1.5ep",
            "schedule.reduction_steps=[3ep,0.9dur]",
        ]
    )
    assert sgdr.first_cycle_steps == 150 and sgdr.reduction_steps == [300, 900]
    assert build(["schedule=piecewise"]).boundaries == [500, 750]  # [0.5dur, 0.75dur]
    assert build(["schedule=exponential", "schedule.decay_steps=1"]).decay_steps == 1
    assert build(["schedule=step", "schedule.step_size=7"]).step_size == 7
    assert build(["schedule=sgdr", "schedule.first_cycle_steps=10"]).first_cycle_steps == 10
    assert build(["schedule=clr", "schedule.step_size=2ep"]).step_size == 200
    assert build(["schedule=range_test", "schedule.num_steps=0.5ep"]).num_steps == 50


def test_dur_counts_the_span_the_schedule_drives():
    assert build(["schedule=one_cycle"]).total_steps == 1000
    # The schedule's own warmup comes first; "1dur" of the decay is the rest.
    cosine = build(["schedule=cosine", "schedule.warmup_steps=0.2dur"])
    assert cosine.warmup_steps == 200 and cosine.decay_steps == 800
    # With a warmup wrapper, the wrapped schedule's "dur" is what is left after it.
    warm = build(["schedule=one_cycle", "warmup=linear", "warmup.warmup_steps=2ep"])
    assert isinstance(warm, S.LinearWarmup) and warm.warmup_steps == 200
    assert warm.schedule.total_steps == 800
    # A child of a sequence drives its stretch: the last one, the rest after its boundary.
    seq = build(["schedule=sequence"])
    assert seq.boundaries == [100] and seq.schedules[1].decay_steps == 900


def test_a_warmup_that_takes_the_whole_run_says_so():
    with pytest.raises(ConfigError, match=r"(?s)takes the whole run of 100 steps.*fix: shorten"):
        build(["schedule=one_cycle", "warmup=linear", "warmup.warmup_steps=1ep"], run_steps=100)


def test_epochs_without_steps_per_epoch_is_an_error():
    with pytest.raises(ConfigError, match=r"schedule.step_size='1ep' is in epochs"):
        build(["schedule=step"], steps_per_epoch=None)


def test_no_config_key_has_an_epochs_twin(compose):
    for name in SCHEDULE_NAMES:
        cfg = compose("train", [f"schedule={name}", "warmup=linear"])
        keys = [*cfg.schedule, *cfg.warmup]
        assert not [k for k in keys if k.endswith("_epochs")], name


@pytest.mark.parametrize("optimizer,peak", [("adam", 1e-3), ("sgd", 0.1)])
def test_rates_follow_the_optimizer(optimizer, peak):
    opt = f"optimizer={optimizer}"
    assert build([opt, "schedule=cosine"]).initial_lr == pytest.approx(peak)
    clr = build([opt, "schedule=clr"])
    assert clr.max_lr == pytest.approx(peak) and clr.base_lr == pytest.approx(peak / 10)
    assert build([opt, "schedule=constant"]).lr == pytest.approx(peak)
    assert build([opt, "schedule=piecewise"]).values == pytest.approx([peak, peak / 10, peak / 100])
    assert build([opt, "schedule=one_cycle"]).max_lr == pytest.approx(peak)
    # optimizer.learning_rate moves every schedule; an explicit schedule rate still wins.
    moved = build([opt, "optimizer.learning_rate=0.05", "schedule=clr"])
    assert moved.max_lr == pytest.approx(0.05) and moved.base_lr == pytest.approx(0.005)
    pinned = build([opt, "optimizer.learning_rate=0.05", "schedule=clr", "schedule.max_lr=0.01"])
    assert pinned.max_lr == pytest.approx(0.01) and pinned.base_lr == pytest.approx(0.005)


def test_switching_schedule_on_a_preset_needs_no_key_removed():
    fashion = build(["experiment=fashion_mlp_sgd", "schedule=cosine"], config="train")
    assert fashion.initial_lr == pytest.approx(0.2)
    assert build(["experiment=fashion_mlp_sgd"], config="train").lr == pytest.approx(0.2)
    mnist = build(["experiment=mnist_cnn_cosine", "schedule=sgdr"], config="train")
    assert mnist.initial_lr == pytest.approx(1e-3)


def test_invalid_value_from_config_names_group_target_and_key():
    with pytest.raises(
        ConfigError,
        match=r"schedule.max_lr must be >= base_lr \(0.0001\). "
        r"Received: schedule.max_lr=1e-05 \(schedules.cyclical.CyclicalLR\)",
    ):
        build(["schedule=clr", "schedule.max_lr=1e-5"])


def test_unknown_key_is_refused_by_composition(compose):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="max_learning_rate"):
        compose("preview", ["schedule=clr", "schedule.max_learning_rate=0.1"])


def test_an_added_key_the_schedule_does_not_take_gets_the_closest(compose):
    cfg = compose("train", ["schedule=cosine", "+schedule.min_rate=0.1"])
    with pytest.raises(
        ConfigError, match=r"(?s)has no key 'min_rate'.*did you mean schedule.min_lr"
    ):
        build_schedule(cfg.schedule, steps_per_epoch=10, run_steps=100)


def test_resolve_lengths_leaves_steps_alone():
    cfg = {"_target_": "schedules.step.StepDecay", "initial_lr": 0.1, "step_size": 7}
    assert resolve_lengths(cfg, steps_per_epoch=100, span=1000) == cfg
