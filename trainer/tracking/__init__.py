"""Per-step and per-epoch tracking: the recorder callback, its background writer, and sinks.

Every sink takes the same calls: `steps(rows)` for per-step rows (see
`trainer.tracking.rows.COLUMNS`), `scalars(values, step)` for named values at one step,
`flush()` and `close()`.
"""
