"""`python -m trainer [group=option ...] [key=value ...]`: train, tracked per step."""

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import trainer

log = logging.getLogger("trainer")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    choices = dict(HydraConfig.get().runtime.choices)
    results = trainer.run(cfg, choices)
    return results.get("test/accuracy")


if __name__ == "__main__":
    main()
