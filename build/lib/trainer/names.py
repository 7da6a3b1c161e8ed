"""What a run is called, in a few words: the same for its MLflow run and its folder.

`${run_label:${mode},model,dataset,schedule,optimizer}` gives `conf/train.yaml`'s folders the
same words (registered as an OmegaConf resolver on import of `trainer`).
"""

from omegaconf import OmegaConf


def label(mode, names):
    """`cnn-mnist-sgdr`, or `lr_find-cnn-mnist-adam` for a range test (it has no schedule);
    `names` holds the model, dataset, schedule and optimizer choices."""
    if mode == "lr_find":
        return f"lr_find-{names['model']}-{names['dataset']}-{names['optimizer']}"
    return f"{names['model']}-{names['dataset']}-{names['schedule']}"


def _run_label(mode, model, dataset, schedule, optimizer):
    names = {"model": model, "dataset": dataset, "schedule": schedule, "optimizer": optimizer}
    return label(mode, names)


OmegaConf.register_new_resolver("run_label", _run_label, replace=True)
