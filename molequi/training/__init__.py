"""Training of energy models, as a Python API and the ``molequi train / evaluate / demo`` commands.

>>> from molequi.training import load_config, train
>>> result = train(load_config("examples/configs/demo.yaml", ["max_epochs=5"]))  # doctest: +SKIP
>>> result.test_metrics["forces_mae"]  # eV/A  # doctest: +SKIP
"""

from .config import ConfigError, DataConfig, LossConfig, ModelConfig, OptimConfig, TrainConfig, load_config
from .evaluate import Predictions, evaluate
from .trainer import TrainResult, Trainer, train

__all__ = [
    "ConfigError",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "Predictions",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "load_config",
    "train",
]
