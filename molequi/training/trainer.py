"""The training loop: data, statistics, model, AdamW with warm-up and decay, EMA, early stopping, resume, DDP.

Files written into ``output_dir`` (by rank 0 only, each atomically):

* ``config.yaml``: the full configuration of the run;
* ``model.pt``: the EMA weights of the best epoch (lowest validation loss), a
  :func:`molequi.models.save_model` file with the training-set statistics;
* ``checkpoint.pt``: everything needed to continue exactly (``resume=True``), after every epoch;
* ``metrics.csv``: one row per epoch (learning rate, training and validation loss and errors);
* ``metrics.json``: test (and best validation) errors of ``model.pt`` at the end;
* ``learning_curves.png``, ``parity_energy.png``, ``parity_forces.png``.

Exact resume: the data split is stored, batches are shuffled from ``(seed, epoch)`` alone, and
the checkpoint holds the weights, optimizer, schedule, EMA, counters and generator states, so
``max_epochs: 2`` equals one epoch plus a resumed one (bit for bit on the CPU).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from ..data import keys
from ..dtypes import default_dtype
from ..data.statistics import compute_statistics
from ..models.checkpoint import UNITS, load_model, model_from_dict, model_to_dict, save_model
from .config import TrainConfig
from .data import Splits, load_splits, reference_energies
from .distributed import Distributed, setup
from .ema import ExponentialMovingAverage
from .evaluate import evaluate
from ..io import atomic_write_json, atomic_write_text
from .history import History
from .loss import WeightedLoss
from .metrics import MetricAccumulator
from .model_factory import build_model, model_arguments, model_r_max
from .plots import plot_learning_curves, plot_predictions
from .report import default_logging
from .schedule import LearningRateSchedule
from .report import epoch_summary
from .state import check_resumable, load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from .yaml_io import dump_yaml

logger = logging.getLogger(__name__)

#: Files of a run, removed first when ``overwrite`` starts a new run in the same folder.
OUTPUT_FILES = (
    "config.yaml", "model.pt", "checkpoint.pt", "metrics.csv", "metrics.json",
    "learning_curves.png", "parity_energy.png", "parity_forces.png",
)  # fmt: skip


@dataclass
class TrainResult:
    """What a finished run reports.

    Attributes:
        output_dir: the run's folder.
        epochs: epochs completed.
        best_epoch: the epoch whose EMA weights are in model.pt.
        stop_reason: ``max_epochs``, ``early_stopping`` or ``max_minutes``.
        val_metrics: validation errors of model.pt (eV, eV/atom, eV/A).
        test_metrics: test errors of model.pt (empty without a test set).
        wall_time_s: training time over all sessions of the run.
    """

    output_dir: Path
    epochs: int
    best_epoch: int
    stop_reason: str
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    wall_time_s: float


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train as configured (see the module docstring); the Python entry point of ``molequi train``.

    Args:
        config: the run (see :func:`molequi.training.load_config`).
        resume: continue from ``output_dir/checkpoint.pt``.
        overwrite: start afresh even if ``output_dir`` holds a previous run (its files are replaced).

    Raises:
        FileExistsError: ``output_dir`` holds a checkpoint and neither ``resume`` nor ``overwrite``.
        FileNotFoundError: missing data or checkpoint.
        ValueError: data that does not fit the config, or a resume with a changed config.
    """
    default_logging()  # the epoch lines on stderr, unless the caller has set up logging
    return Trainer(config, resume=resume, overwrite=overwrite).run()


class Trainer:
    """One training run; :meth:`run` trains, tests and writes the results (see :func:`train`)."""

    def __init__(self, config: TrainConfig, resume: bool = False, overwrite: bool = False) -> None:
        setup_start = budget_clock(config.budget_clock)()
        self.config = config
        #: the clock of the budget and of the logged epoch times (wall or this process's CPU time)
        self.clock = budget_clock(config.budget_clock)
        self.output_dir = Path(config.output_dir)
        self.dtype = getattr(torch, config.dtype)
        self.dist: Distributed = setup(config.device)
        checkpoint = self._previous_run(resume, overwrite)
        if config.batch_size % self.dist.world_size:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by the {self.dist.world_size} processes")
        with default_dtype(self.dtype):
            self.splits = self._load_data(checkpoint["split"] if checkpoint else None)
            self.loss = WeightedLoss(config.loss)
            self._check_targets(self.splits)
            seed_everything(config.seed)
            self.statistics: dict[str, Any]
            if checkpoint:
                self.statistics, model = checkpoint["model"]["statistics"], model_from_dict(checkpoint["model"])
            else:
                self.statistics, model = self._new_model()
            self.model = model.to(self.dist.device)
            self.ema = ExponentialMovingAverage(self.model, config.optim.ema_decay)
            optim = config.optim
            self.optimizer = torch.optim.AdamW(
                self.model.parameters(), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay, amsgrad=optim.amsgrad
            )
            # the last block's non-scalar outputs never reach the energy: their weights get no gradient
            self.network = DistributedDataParallel(self.model, find_unused_parameters=True) if self.dist.enabled else self.model
            sampler = DistributedSampler(
                self.splits.train, num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=True, seed=config.seed
            )
            self.loader = DataLoader(self.splits.train, batch_size=config.batch_size // self.dist.world_size, sampler=sampler)
            self.schedule = LearningRateSchedule(
                self.optimizer, optim, len(self.loader), config.max_epochs, config.max_minutes
            )
        self.history = History(self.output_dir, write=self.dist.is_main, tensorboard=config.tensorboard)
        self.epoch, self.best_epoch, self.bad_epochs = 0, 0, 0
        self.best_loss = math.inf
        self.elapsed_s, self.last_epoch_s, self.epoch_start = 0.0, 0.0, self.clock()
        #: seconds of the last validation: what a budget-cut epoch leaves for it
        self.validation_s = 0.0
        self.final_stage = False
        if checkpoint:
            self._restore(checkpoint)
        # the budget counts the set-up too (reading data, statistics, building the model)
        self.elapsed_s += self.clock() - setup_start
        if not checkpoint and self.dist.is_main:
            atomic_write_text(self.output_dir / "config.yaml", dump_yaml(config.to_dict()))

    # ------------------------------------------------------------------ setup
    def _previous_run(self, resume: bool, overwrite: bool) -> dict[str, Any] | None:
        """The checkpoint to resume from, after checking that the config may resume it."""
        path = self.output_dir / "checkpoint.pt"
        if resume:
            checkpoint = load_checkpoint(path)
            check_resumable(checkpoint["config"], self.config.to_dict())
            return checkpoint
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"{self.output_dir} holds a previous run; resume it, overwrite it, or choose another output_dir")
            if self.dist.is_main:
                for name in OUTPUT_FILES:
                    (self.output_dir / name).unlink(missing_ok=True)
            self.dist.barrier()
        return None

    def _load_data(self, indices: dict[str, list[int]] | None) -> Splits:
        """Read and split the data; rank 0 first, so that it alone fills the dataset cache."""
        r_max = model_r_max(self.config.model)
        if not self.dist.is_main:
            self.dist.barrier()
        splits = load_splits(self.config.data, r_max, self.dtype, self.config.seed, indices)
        if self.dist.is_main:
            self.dist.barrier()
            logger.info("data: %d train, %d validation, %d test frames", len(splits.train), len(splits.val), len(splits.test))
        return splits

    def _check_targets(self, splits: Splits) -> None:
        for key, needed, weight in ((keys.FORCES, self.loss.needs_forces, "forces_weight"), (keys.STRESS, self.loss.needs_stress, "stress_weight")):
            if needed and not splits.has(key):
                raise ValueError(f"loss.{weight} > 0 but the training data has no {key}; set loss.{weight}: 0")

    def _new_model(self) -> tuple[dict[str, Any], torch.nn.Module]:
        """Statistics of the training set and a freshly initialised model built from them."""
        references = reference_energies(self.config.data, model_r_max(self.config.model))
        statistics = compute_statistics(self.splits.train, atomic_energies=references)
        arguments = model_arguments(self.config.model, statistics)
        model = build_model(self.config.model.name, arguments)
        if self.dist.is_main:
            logger.info(
                "statistics: elements %s, avg_num_neighbors %.3f, scale %.4g, shift %.4g (E0 by %s)",
                statistics.elements, statistics.avg_num_neighbors, arguments.get("scale", float("nan")),
                arguments.get("shift", float("nan")), statistics.atomic_energies_source,
            )  # fmt: skip
            if arguments.get("intensive"):
                logger.info("intensive target: shift %.4g, scale %.4g", arguments["intensive_shift"], arguments["intensive_scale"])
        return statistics.to_dict(), model

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.ema.load_state_dict(checkpoint["ema"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.schedule.load_state_dict(checkpoint["schedule"])
        progress = checkpoint["progress"]
        self.epoch, self.best_epoch, self.bad_epochs = progress["epoch"], progress["best_epoch"], progress["bad_epochs"]
        self.best_loss, self.elapsed_s, self.last_epoch_s = progress["best_loss"], progress["elapsed_s"], progress["last_epoch_s"]
        self.validation_s = progress.get("validation_s", 0.0)
        if progress.get("final_stage", False):
            self._enter_final_stage(reset_best=False)
        self.history.restore(checkpoint["history"])
        set_rng_state(checkpoint["rng"])
        if self.dist.is_main:
            logger.info("resuming %s after epoch %d (best epoch %d)", self.output_dir, self.epoch, self.best_epoch)

    # ------------------------------------------------------------------ loop
    def run(self) -> TrainResult:
        """Train until a stop condition holds, then test model.pt and write metrics.json and the plots."""
        try:
            with default_dtype(self.dtype):
                stop = self._stop_reason()
                while stop is None:
                    self._epoch()
                    stop = self._stop_reason()
                return self._finish(stop)
        finally:
            self.history.close()
            # drop DDP's reducer while the process group is alive: freed after
            # destroy_process_group, gloo's destructor can wait forever on its threads
            self.network = self.model
            self.dist.close()

    def _epoch(self) -> None:
        """Train one epoch, validate the EMA weights, keep the best, log and checkpoint."""
        start = self.epoch_start = self.clock()
        epoch = self.epoch + 1
        stage_at = self.config.loss.final_stage
        if stage_at is not None and not self.final_stage and self.schedule.progress >= stage_at:
            self._enter_final_stage(reset_best=True)
        train_metrics = self._train_epoch(epoch)
        lr = self.schedule.lr
        validation_start = self.clock()
        val_metrics = self._validate()
        self.validation_s = self.clock() - validation_start
        self.schedule.epoch_end(val_metrics["loss"])
        if val_metrics["loss"] < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = val_metrics["loss"], epoch, 0
            if self.dist.is_main:
                save_model(self.ema.module, self.output_dir / "model.pt", statistics=self.statistics)
        else:
            self.bad_epochs += 1
        self.epoch = epoch
        self.last_epoch_s = self.clock() - start
        self.elapsed_s += self.last_epoch_s
        row = {"epoch": epoch, "lr": lr}
        row.update({f"train_{k}": v for k, v in train_metrics.items()})
        row.update({f"val_{k}": v for k, v in val_metrics.items()})
        self.history.append(row)
        if self.dist.is_main:
            logger.info(epoch_summary(row, self.config.max_epochs, self.last_epoch_s, epoch == self.best_epoch))
            save_checkpoint(self._state(), self.output_dir / "checkpoint.pt")

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.network.train()
        self.loader.sampler.set_epoch(epoch)
        accumulator = MetricAccumulator()
        clip = self.config.optim.grad_clip
        bar = tqdm(
            self.loader, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True,
            disable=not (self.config.progress_bar and self.dist.is_main and sys.stderr.isatty()),  # a log gets the epoch lines
        )  # fmt: skip
        running, steps = 0.0, len(self.loader)
        for step, batch in enumerate(bar, 1):
            batch = batch.to(self.dist.device)
            pred = self.network(batch, compute_forces=self.loss.needs_forces, compute_stress=self.loss.needs_stress)
            loss = self.loss(pred, batch, self.dist.sum, self.dist.world_size)
            value = loss.item()  # the one host synchronisation of a step
            if not math.isfinite(value):
                raise FloatingPointError(f"the loss is {value} at epoch {epoch}, step {step}: training diverged; lower optim.lr")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.optimizer.step()
            self.schedule.step(self.elapsed_s + self.clock() - self.epoch_start)
            self.ema.update(self.model)
            accumulator.update(pred, batch)
            running += (value - running) / step  # under DDP: this process's estimate of the batch loss
            bar.set_postfix(loss=f"{running:.4g}", lr=f"{self.schedule.lr:.2e}", refresh=False)
            if step < steps and self.config.max_minutes is not None and self._cut_epoch_now():
                if self.dist.is_main:
                    logger.info("epoch %d cut at step %d of %d: max_minutes leaves time only to validate", epoch, step, steps)
                break
        accumulator.reduce(self.dist.sum)
        return self._summarize(accumulator)

    def _cut_epoch_now(self) -> bool:
        """Whether the running epoch must end after this step (:meth:`_budget_spent`; rank 0 decides for all)."""
        return bool(self.dist.broadcast(self._budget_spent(self.clock() - self.epoch_start)))

    def _budget_spent(self, running_s: float = 0.0) -> bool:
        """Whether, ``running_s`` into an epoch, the time left of ``max_minutes`` is no more than the last validation took."""
        budget = self.config.max_minutes
        return budget is not None and self.elapsed_s + running_s + self.validation_s >= 60 * budget

    def _enter_final_stage(self, reset_best: bool) -> None:
        """Switch to the final-stage loss weights (MACE's late rise of the energy weight).

        The best validation loss restarts, since losses of the two stages are not comparable:
        model.pt becomes the best EMA model under the final weights.
        """
        self.final_stage = True
        self.loss = WeightedLoss(self.config.loss.final())
        if reset_best:
            self.best_loss, self.bad_epochs = math.inf, 0
            if self.dist.is_main:
                logger.info("final stage from epoch %d: loss weights %s", self.epoch + 1, self.loss.weights)

    def _validate(self) -> dict[str, float]:
        """Errors and loss of the EMA weights on the validation set (each process takes every k-th graph)."""
        shard = self.splits.val[self.dist.rank :: self.dist.world_size]
        accumulator, _ = evaluate(self.ema.module, shard, self.dist.device, self.config.eval_batch_size)
        accumulator.reduce(self.dist.sum)
        return self._summarize(accumulator)

    def _summarize(self, accumulator: MetricAccumulator) -> dict[str, float]:
        """``loss`` plus MAE and RMSE of each quantity (mean squared errors dropped)."""
        metrics = accumulator.compute()
        mse = {k.removesuffix("_mse"): v for k, v in metrics.items() if k.endswith("_mse")}
        return {"loss": self.loss.from_mse(mse), **{k: v for k, v in metrics.items() if not k.endswith("_mse")}}

    def _stop_reason(self) -> str | None:
        """Why to stop now, decided by rank 0 (whose clock counts) for all processes."""
        reason = None
        config = self.config
        if self.epoch >= config.max_epochs:
            reason = "max_epochs"
        elif config.early_stopping_patience is not None and self.bad_epochs >= config.early_stopping_patience:
            reason = "early_stopping"
        elif self.epoch > 0 and self._budget_spent():  # at least one epoch: model.pt must exist
            reason = "max_minutes"
        return self.dist.broadcast(reason)

    def _state(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "model": model_to_dict(self.model, self.statistics),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "progress": {
                "epoch": self.epoch, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "best_loss": self.best_loss, "elapsed_s": self.elapsed_s, "last_epoch_s": self.last_epoch_s,
                "validation_s": self.validation_s, "final_stage": self.final_stage,
            },  # fmt: skip
            "history": self.history.rows,
            "split": self.splits.indices,
            "rng": rng_state(),
        }

    # ------------------------------------------------------------------ end
    def _finish(self, stop: str) -> TrainResult:
        """Test model.pt, write metrics.json and the plots (rank 0), and report."""
        best_row = next(row for row in self.history.rows if row["epoch"] == self.best_epoch)
        val_metrics = {k.removeprefix("val_"): v for k, v in best_row.items() if k.startswith("val_")}
        test_metrics = None
        if self.dist.is_main:
            logger.info("stopped after epoch %d (%s); testing the EMA weights of epoch %d", self.epoch, stop, self.best_epoch)
            test_metrics = self._write_results(stop, val_metrics)
        test_metrics = self.dist.broadcast(test_metrics)
        return TrainResult(self.output_dir, self.epoch, self.best_epoch, stop, val_metrics, test_metrics, self.elapsed_s)

    def _write_results(self, stop: str, val_metrics: dict[str, float]) -> dict[str, float]:
        """Test metrics of model.pt, metrics.json and the plots (parity on the test set, else validation)."""
        model = load_model(self.output_dir / "model.pt", map_location=self.dist.device)
        device, batch_size, plots = self.dist.device, self.config.eval_batch_size, self.config.plots
        test_metrics, predictions = {}, None
        if len(self.splits.test):
            accumulator, predictions = evaluate(model, self.splits.test, device, batch_size, collect=plots)
            test_metrics = self._summarize(accumulator)
        summary = {
            "test": test_metrics,
            "val": val_metrics,
            "best_epoch": self.best_epoch,
            "epochs": self.epoch,
            "stop_reason": stop,
            "wall_time_s": self.elapsed_s,
            "frames": {name: len(getattr(self.splits, name)) for name in ("train", "val", "test")},
            "units": {**UNITS, "energy_per_atom": "eV/atom"},
        }
        atomic_write_json(self.output_dir / "metrics.json", summary)
        if plots:
            if predictions is None:
                _, predictions = evaluate(model, self.splits.val, device, batch_size, collect=True)
            plot_learning_curves(self.history.rows, self.output_dir / "learning_curves.png")
            plot_predictions(predictions, self.output_dir)
        return test_metrics


def budget_clock(name: str) -> Callable[[], float]:
    """Seconds of the ``budget_clock`` setting: ``wall`` (``time.perf_counter``) or ``cpu`` (this process's CPU time)."""
    return time.process_time if name == "cpu" else time.perf_counter
