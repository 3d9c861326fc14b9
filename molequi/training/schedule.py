"""Learning-rate schedule: linear warm-up per step, then plateau decay, cosine decay or constant."""

from __future__ import annotations

import math
from typing import Any

import torch

from .config import OptimConfig


class LearningRateSchedule:
    """Sets the learning rate of every parameter group of ``optimizer`` before each step.

    ``lr(step) = max(min_lr, warm-up(step) * decay)``, where warm-up rises linearly from
    ``1 / warmup_steps`` to 1 over the first ``warmup_steps`` steps and decay is:

    * ``plateau``: ``plateau_factor ** k`` after ``k`` reductions, one each time the validation
      loss has not improved for more than ``plateau_patience`` epochs;
    * ``cosine``: half a cosine from ``lr`` down to ``min_lr`` over ``total_steps``;
    * ``constant``: 1.

    Args:
        optimizer: whose groups get ``config.lr`` times the schedule.
        config: the optimisation settings.
        steps_per_epoch: optimisation steps per epoch.
        max_epochs: the cosine schedule ends after ``max_epochs * steps_per_epoch`` steps.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: OptimConfig, steps_per_epoch: int, max_epochs: int) -> None:
        self.optimizer = optimizer
        self.config = config
        self.warmup_steps = round(config.warmup_epochs * steps_per_epoch)
        self.total_steps = max(1, max_epochs * steps_per_epoch)
        self.step_count = 0
        self.plateau_scale = 1.0
        self.best_loss = math.inf
        self.bad_epochs = 0
        self._apply()

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        config, step = self.config, self.step_count
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if config.scheduler == "cosine":
            progress = min(1.0, max(0.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)))
            lr = config.min_lr + (config.lr - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        elif config.scheduler == "plateau":
            lr = config.lr * self.plateau_scale
        else:
            lr = config.lr
        return max(config.min_lr, warmup * lr)

    def step(self) -> None:
        """Advance by one optimisation step."""
        self.step_count += 1
        self._apply()

    def epoch_end(self, val_loss: float) -> None:
        """Record the epoch's validation loss (drives the plateau decay)."""
        if val_loss < self.best_loss:
            self.best_loss, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
            if self.config.scheduler == "plateau" and self.bad_epochs > self.config.plateau_patience:
                self.plateau_scale *= self.config.plateau_factor
                self.bad_epochs = 0
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "plateau_scale": self.plateau_scale, "best_loss": self.best_loss, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.plateau_scale = float(state["plateau_scale"])
        self.best_loss = float(state["best_loss"])
        self.bad_epochs = int(state["bad_epochs"])
        self._apply()

    def _apply(self) -> None:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
