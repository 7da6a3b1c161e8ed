"""The recorder under pressure: a slow writer and a small buffer lose no step."""

import time

import keras
import numpy as np

import schedules
from metrics import MeanIoU
from trainer.models import mlp
from trainer.recording import StepBuffer, recording
from trainer.tracking.recorder import StepRecorder


class SlowWriter:
    """Takes 30 ms per block of rows, far slower than the steps that produce them."""

    def __init__(self):
        self.steps_seen = []

    def steps(self, rows):
        time.sleep(0.03)
        self.steps_seen.extend(int(s) for s in rows[:, 0])

    def scalars(self, values, step):
        pass


def test_a_slow_writer_makes_training_wait_instead_of_losing_rows():
    flush_every, steps_per_execution = 2, 1
    buffer = StepBuffer(StepRecorder.capacity(flush_every, steps_per_execution), num_classes=10)
    mean_iou = MeanIoU(10)
    loss = keras.losses.SparseCategoricalCrossentropy()
    model = recording(mlp(), buffer, mean_iou, loss)
    schedule = schedules.CyclicalLR(1e-3, 1e-2, 7)
    model.compile(
        optimizer=keras.optimizers.SGD(schedule),
        loss=loss,
        metrics=["accuracy", mean_iou],
    )
    writer = SlowWriter()
    recorder = StepRecorder(buffer, writer, flush_every)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (8 * 40, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 8 * 40)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[recorder])
    assert writer.steps_seen == list(range(80))
    assert recorder.recorded == 80


def test_buffer_rows_carry_their_step_and_rate():
    buffer = StepBuffer(5, num_classes=2)
    confusion = np.array([[3.0, 1.0], [0.0, 4.0]], np.float32)
    for k in range(7):
        buffer.update_state(k, 0.1 * k, 1.0 + k, confusion)
    read = buffer.read(2, 7)
    assert read["step"].tolist() == [2, 3, 4, 5, 6]
    np.testing.assert_allclose(read["lr"], [0.2, 0.3, 0.4, 0.5, 0.6], rtol=1e-6)
    np.testing.assert_allclose(read["loss"], [3, 4, 5, 6, 7], rtol=1e-6)
    np.testing.assert_allclose(read["confusion"][0], confusion)
    # Steps 0 and 1 were overwritten by 5 and 6: reading them finds nothing.
    assert len(buffer.read(0, 2)["step"]) == 0
