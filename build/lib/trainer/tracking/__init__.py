"""Per-step and per-epoch tracking: the recorder callback, its writer process, and the sinks.

`recorder.StepRecorder` moves per-step rows (layout: `rows`) from the device buffer to
`writer.WriterProcess`, which drives the configured sinks (`sinks/`, chosen by
`conf/sink/*.yaml`) through the `sinks.base.Sink` calls; `run.TrackedRun` opens and closes
them together, and `metadata` says what a run records about itself.
"""
