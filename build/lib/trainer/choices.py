"""Choice lists of the trainer's own keys, stated once.

No TensorFlow here: `trainer.checks` reads them before it loads, and the code that acts on
each key (`trainer.run`, `trainer.train`, `trainer.lr_find`) reads them too.
"""

# What `python -m trainer` does (`mode`).
MODES = ("train", "lr_find")
# trainer.jit_compile: Keras' own values.
JIT_COMPILE = ("auto", True, False)
# trainer.models: which models to keep (see conf/trainer/default.yaml).
MODELS = ("auto", "all", "best", "none")
# What a training run returns at its end (see trainer.train.train), for optimized_metric;
# test/iou_class_<k> too, for each class k.
FINAL_METRICS = (
    "test/accuracy",
    "test/loss",
    "test/mean_iou",
    "val/accuracy",  # the last epoch's validation metrics: choose settings on them
    "val/loss",
    "val/mean_iou",
)
CLASS_IOU_PREFIX = "test/iou_class_"
# Of those, the ones where lower is better (a sweep's best trial minimises them).
MINIMIZED = ("test/loss", "val/loss")
# Schedule keys that `auto` may set from the range test's suggestion.
AUTO_KEYS = ("max_lr", "initial_lr")
# The range test's suggestion rules (lr_find.suggestion), see trainer.lr_find.suggest.
SUGGESTION_RULES = ("valley", "steepest", "minimum")
