"""Learning-rate schedule: linear warm-up per step, then plateau decay, cosine decay or constant.

With a wall-clock budget (``max_minutes``) the cosine is planned in time: its progress is the
fraction of the budget used, so the learning rate reaches ``min_lr`` when the time runs out,
whatever the epoch time turns out to be. The plan (steps or seconds) is fixed when a run starts
and stored in the checkpoint: a resume continues the same curve, even with a new ``max_epochs``
or ``max_minutes`` (which only move the stop).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from .config import OptimConfig

logger = logging.getLogger(__name__)


class LearningRateSchedule:
    """Sets the learning rate of every parameter group of ``optimizer`` before each step.

    ``lr = max(min_lr, warm-up(step) * decay)``, where warm-up rises linearly from
    ``1 / warmup_steps`` to 1 over the first ``warmup_steps`` steps and decay is:

    * ``plateau``: ``plateau_factor ** k`` after ``k`` reductions, one each time the validation
      loss has not improved for more than ``plateau_patience`` epochs;
    * ``cosine``: half a cosine from ``lr`` down to ``min_lr`` over the plan: ``total_steps`` after
      the warm-up, or, with a budget, ``budget_s`` seconds of training;
    * ``constant``: 1.

    Args:
        optimizer: whose groups get ``config.lr`` times the schedule.
        config: the optimisation settings.
        steps_per_epoch: optimisation steps per epoch.
        max_epochs: without a budget, the cosine ends after ``max_epochs * steps_per_epoch`` steps.
        max_minutes: the wall-clock budget (None: none).

    Attributes:
        progress: fraction of the plan done, in [0, 1] (what :meth:`step` was last told).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        config: OptimConfig,
        steps_per_epoch: int,
        max_epochs: int,
        max_minutes: float | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.config = config
        self.warmup_steps = round(config.warmup_epochs * steps_per_epoch)
        self.plan = {
            "total_steps": max(1, max_epochs * steps_per_epoch),
            "budget_s": None if max_minutes is None else 60.0 * float(max_minutes),
        }
        self.step_count = 0
        self.progress = 0.0
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
            lr = config.min_lr + (config.lr - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * self.progress))
        elif config.scheduler == "plateau":
            lr = config.lr * self.plateau_scale
        else:
            lr = config.lr
        return max(config.min_lr, warmup * lr)

    def step(self, elapsed_s: float | None = None) -> None:
        """Advance by one optimisation step.

        Args:
            elapsed_s: training time so far (s); needed when the plan is a time budget.
        """
        self.step_count += 1
        self._update_progress(elapsed_s)
        self._apply()

    def _update_progress(self, elapsed_s: float | None) -> None:
        budget = self.plan["budget_s"]
        if budget is not None:
            if elapsed_s is None:
                raise ValueError("a time-budgeted schedule needs the elapsed training time at every step")
            self.progress = min(1.0, max(0.0, elapsed_s / budget))
        else:
            span = max(1, self.plan["total_steps"] - self.warmup_steps)
            self.progress = min(1.0, max(0.0, (self.step_count - self.warmup_steps) / span))

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
        return {
            "step_count": self.step_count, "progress": self.progress, "plan": dict(self.plan),
            "plateau_scale": self.plateau_scale, "best_loss": self.best_loss, "bad_epochs": self.bad_epochs,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a schedule, its plan included (a changed ``max_epochs``/``max_minutes`` is logged, not applied)."""
        self.step_count = int(state["step_count"])
        self.plateau_scale = float(state["plateau_scale"])
        self.best_loss = float(state["best_loss"])
        self.bad_epochs = int(state["bad_epochs"])
        saved = state.get("plan", self.plan)
        if saved != self.plan and self.config.scheduler == "cosine":
            logger.warning(
                "resume: the learning-rate schedule continues its original plan %s (the config now gives %s); "
                "only the stop moves", saved, self.plan,
            )  # fmt: skip
        self.plan = dict(saved)
        if self.plan["budget_s"] is None:
            self._update_progress(None)
        else:
            self.progress = float(state["progress"])
        self._apply()

    def _apply(self) -> None:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
