"""Where tracked values go: one class per sink, each chosen by a `conf/sink/<name>.yaml`.

`base.Sink` is the protocol the writer process drives; `mlflow_sink`, `tensorboard_sink` and
`csv_sink` are the three that ship. Adding a sink is one class and one YAML
(docs/training.md, "Adding a sink").
"""
