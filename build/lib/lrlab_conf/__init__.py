"""lrlab's Hydra config groups. A package (`lrlab_conf`, mapped to this folder in
pyproject.toml) so that an installed lrlab finds them: Hydra reads them through
`pkg://lrlab_conf`; `trainer.config.CONF` is this folder."""
