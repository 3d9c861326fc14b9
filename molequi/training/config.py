"""The training configuration: strict nested dataclasses read from YAML, with typed ``--set`` overrides.

A config file is a YAML mapping with the sections ``data``, ``model``, ``loss`` and ``optim`` and
the run keys of :class:`TrainConfig`. Every key is checked: an unknown or misspelt key, a missing
required key or a value of the wrong type raises :class:`ConfigError` naming the key
(``data.train_size``). The ``model`` section names a class of
:data:`molequi.models.registry.MODEL_CLASSES` (``name``, default ``EquivariantPotential``);
its other keys are that class's constructor arguments, checked against its signature.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..models.registry import MODEL_CLASSES
from .strict import ConfigError, build_dataclass, coerce, deep_copy, plain, unknown_key
from .yaml_io import parse_value, read_yaml


@dataclass
class DataConfig:
    """Where the data comes from and how it is split.

    Attributes:
        path: the dataset file (relative paths are relative to the working directory).
        train_size, val_size: frames drawn at random (seeded by ``seed``) from ``path`` for
            training and validation; an int is a count, a float in (0, 1) a fraction.
        format: ``ase`` (any file ASE reads, e.g. extxyz) or ``qm9`` (``molequi.data.QM9``: the
            original tarball, a qm9pack folder or a QM9 npz; no forces).
        target: the property for ``qm9``: ``U0``, ``U``, ``H``, ``G`` (energies with QM9's atom
            references as E0), ``mu`` (the dipole norm, loss.dipole_weight), ``gap``, ``homo``,
            ``lumo`` (intensive, loss.intensive_weight) or another property read as energy.
        test_path: a separate test file (same format); without it the test set is the frames
            of ``path`` left after the training and validation draws.
        test_size: at most this many test frames (a seeded random subset); None takes all.
        energy_key, forces_key, stress_key: where the file stores the targets (None: the
            calculator's results).
        energy_unit: unit of energies in the file (``eV``, ``meV``, ``kcal/mol``, ``Ha``, ...).
        isolated_atoms: reference energies E0 of isolated atoms, as a file of one-atom frames
            (read like ``path``) or a mapping ``{element: energy in energy_unit}``; None fits
            E0 per element by least squares on the training set (QM9 energies: its atom references).
        cache_dir: where processed datasets are cached (None: ``$MOLEQUI_CACHE_DIR`` or
            ``~/.cache/molequi``).
    """

    path: str
    train_size: int | float
    val_size: int | float
    format: Literal["ase", "qm9"] = "ase"
    target: str | None = None
    test_path: str | None = None
    test_size: int | None = None
    energy_key: str | None = None
    forces_key: str | None = None
    stress_key: str | None = None
    energy_unit: str = "eV"
    isolated_atoms: str | dict[str | int, float] | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("train_size", "val_size"):
            value = getattr(self, name)
            if isinstance(value, float) and not 0 < value < 1:
                raise ConfigError(f"data.{name}: a fraction must lie in (0, 1), got {value}")
            if isinstance(value, int) and value < 1:
                raise ConfigError(f"data.{name}: must be positive, got {value}")
        if self.test_size is not None and self.test_size < 1:
            raise ConfigError(f"data.test_size: must be positive, got {self.test_size}")


@dataclass
class ModelConfig:
    """A model class name and its constructor arguments (checked against its signature).

    Attributes:
        name: a key of :data:`~molequi.models.registry.MODEL_CLASSES`.
        options: constructor arguments; ``species``, ``avg_num_neighbors``, ``atomic_energies``,
            ``scale`` and ``shift``, when left out, come from the training-set statistics.
    """

    name: str = "EquivariantPotential"
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], prefix: str = "model.") -> ModelConfig:
        """Check ``{name: ..., <constructor argument>: value, ...}`` and build the config.

        Raises:
            ConfigError: unknown model name, unknown argument or ill-typed value.
        """
        options = dict(raw)
        name = options.pop("name", cls.name)
        if name not in MODEL_CLASSES:
            raise ConfigError(f"{prefix}name: unknown model {name!r}; known: {', '.join(sorted(MODEL_CLASSES))}")
        model_class = MODEL_CLASSES[name]
        signature = inspect.signature(model_class.__init__)
        parameters = {
            key: p for key, p in signature.parameters.items()
            if key != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }  # fmt: skip
        hints = typing.get_type_hints(model_class.__init__)
        checked = {}
        for key, value in options.items():
            if key not in parameters:
                raise ConfigError(unknown_key(prefix + str(key), key, ["name", *parameters], f"of model {name}"))
            checked[key] = coerce(value, hints.get(key, Any), prefix + key)
        return cls(name=name, options=checked)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form: ``{name, **options}``."""
        return {"name": self.name, **self.options}


@dataclass
class LossConfig:
    """Weights of the mean squared errors of energy per atom (eV), forces (eV/A), stress (eV/A^3) and properties.

    Attributes:
        energy_weight, forces_weight, stress_weight: the weights.
        dipole_weight: weight of the MSE of the dipole norm (Debye; QM9 ``mu``, a model with
            ``dipole: true``); see :mod:`molequi.training.loss`.
        intensive_weight: weight of the MSE of a per-molecule intensive target (QM9 ``gap``,
            ``homo``, ``lumo`` in eV; a model with ``intensive: true``).
        final_stage: fraction of the run (of the time budget with ``max_minutes``, else of the
            steps) after which the ``final_*`` weights apply, as in MACE's second stage; None:
            one stage. The best-model tracking restarts there.
        final_energy_weight, final_forces_weight, final_stress_weight: weights of the final
            stage (None: unchanged).
    """

    energy_weight: float = 1.0
    forces_weight: float = 10.0
    stress_weight: float = 0.0
    dipole_weight: float = 0.0
    intensive_weight: float = 0.0
    final_stage: float | None = None
    final_energy_weight: float | None = None
    final_forces_weight: float | None = None
    final_stress_weight: float | None = None

    def __post_init__(self) -> None:
        for name in ("energy_weight", "forces_weight", "stress_weight"):
            for key in (name, f"final_{name}"):
                value = getattr(self, key)
                if value is not None and value < 0:
                    raise ConfigError(f"loss.{key}: must be non-negative, got {value}")
        for key in ("dipole_weight", "intensive_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"loss.{key}: must be non-negative, got {getattr(self, key)}")
        if self.energy_weight == self.forces_weight == self.stress_weight == self.dipole_weight == self.intensive_weight == 0:
            raise ConfigError("loss: all weights are zero; nothing to train")
        if self.final_stage is not None and not 0 <= self.final_stage < 1:
            raise ConfigError(f"loss.final_stage: must lie in [0, 1) or be null, got {self.final_stage}")
        finals = (self.final_energy_weight, self.final_forces_weight, self.final_stress_weight)
        if self.final_stage is None and any(w is not None for w in finals):
            raise ConfigError("loss: final_*_weight given without loss.final_stage (the fraction of the run where it starts)")

    def final(self) -> LossConfig:
        """The weights of the final stage, as a one-stage config."""

        def pick(final: float | None, first: float) -> float:
            return first if final is None else final

        return LossConfig(
            energy_weight=pick(self.final_energy_weight, self.energy_weight),
            forces_weight=pick(self.final_forces_weight, self.forces_weight),
            stress_weight=pick(self.final_stress_weight, self.stress_weight),
            dipole_weight=self.dipole_weight,
            intensive_weight=self.intensive_weight,
        )


@dataclass
class OptimConfig:
    """AdamW, learning-rate schedule, gradient clipping and the EMA of weights.

    Attributes:
        lr: peak learning rate; weight_decay, amsgrad, betas: AdamW's.
        warmup_epochs: linear warm-up from ``lr / (warm-up steps)`` to ``lr`` (may be fractional).
        scheduler: after warm-up, ``plateau`` (multiply by ``plateau_factor`` after
            ``plateau_patience`` epochs without a better validation loss), ``cosine`` (to
            ``min_lr`` at ``max_epochs``) or ``constant``.
        min_lr: the learning rate never goes below this.
        grad_clip: clip the gradient norm to this (None: no clipping).
        ema_decay: decay of the exponential moving average of the weights (0: no averaging).
    """

    lr: float = 0.01
    weight_decay: float = 0.0
    amsgrad: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 0.0
    scheduler: Literal["plateau", "cosine", "constant"] = "plateau"
    plateau_factor: float = 0.8
    plateau_patience: int = 25
    min_lr: float = 1e-6
    grad_clip: float | None = 10.0
    ema_decay: float = 0.99

    def __post_init__(self) -> None:
        checks = [
            ("lr", self.lr > 0, "must be positive"),
            ("weight_decay", self.weight_decay >= 0, "must be non-negative"),
            ("betas", len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "must be two numbers in [0, 1)"),
            ("warmup_epochs", self.warmup_epochs >= 0, "must be non-negative"),
            ("plateau_factor", 0 < self.plateau_factor < 1, "must lie in (0, 1)"),
            ("plateau_patience", self.plateau_patience >= 0, "must be non-negative"),
            ("min_lr", 0 <= self.min_lr <= self.lr, "must lie in [0, lr]"),
            ("grad_clip", self.grad_clip is None or self.grad_clip > 0, "must be positive or null"),
            ("ema_decay", 0 <= self.ema_decay < 1, "must lie in [0, 1)"),
        ]
        for name, ok, message in checks:
            if not ok:
                raise ConfigError(f"optim.{name}: {message}, got {getattr(self, name)!r}")
        self.betas = tuple(self.betas)


@dataclass
class TrainConfig:
    """A whole training run.

    Attributes:
        data, model, loss, optim: the sections above.
        output_dir: where model.pt, checkpoint.pt, metrics and plots go.
        max_epochs: upper bound on epochs.
        max_minutes: wall-time budget (None: none), counted from the start of the run (data,
            statistics and model set-up included) and checked after every step: an epoch ends
            early when the time left is what the last validation took, and the run then stops
            (after validating, so a cut epoch still counts). A ``cosine`` schedule is then planned in time: it
            reaches ``optim.min_lr`` when the budget runs out (:mod:`molequi.training.schedule`).
        budget_clock: what ``max_minutes`` counts: ``wall`` (wall-clock time, the default) or
            ``cpu`` (this process's CPU time, which other jobs on a shared machine do not change:
            for comparisons at equal compute).
        seed: seeds the data split, the weights and the per-epoch shuffling.
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``float32`` or ``float64``.
        batch_size: graphs per optimisation step (the global batch, split over DDP processes).
        eval_batch_size: graphs per batch for validation and test.
        early_stopping_patience: stop after this many epochs without a better validation loss
            (None: never).
        progress_bar: show a tqdm bar per epoch.
        plots: write the learning-curve and parity PNGs at the end.
        tensorboard: also log to TensorBoard under ``output_dir/tensorboard`` when it is installed.
    """

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    output_dir: str = "runs/train"
    max_epochs: int = 100
    max_minutes: float | None = None
    budget_clock: Literal["wall", "cpu"] = "wall"
    seed: int = 0
    device: str = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    batch_size: int = 5
    eval_batch_size: int = 20
    early_stopping_patience: int | None = None
    progress_bar: bool = True
    plots: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        positive = [("max_epochs", self.max_epochs), ("batch_size", self.batch_size), ("eval_batch_size", self.eval_batch_size)]
        for name, value in positive:
            if value < 1:
                raise ConfigError(f"{name}: must be positive, got {value}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"max_minutes: must be positive or null, got {self.max_minutes}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(f"early_stopping_patience: must be positive or null, got {self.early_stopping_patience}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")

    @classmethod
    def from_dict(cls, raw: Any) -> TrainConfig:
        """Check a nested mapping (as read from YAML) and build the config.

        Raises:
            ConfigError: naming the first bad key.
        """
        return build_dataclass(cls, raw, "")

    def to_dict(self) -> dict[str, Any]:
        """The nested YAML form; ``TrainConfig.from_dict(c.to_dict()) == c``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ModelConfig):
                out[f.name] = value.to_dict()
            elif dataclasses.is_dataclass(value):
                out[f.name] = {g.name: plain(getattr(value, g.name)) for g in dataclasses.fields(value)}
            else:
                out[f.name] = plain(value)
        return out


def load_config(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a config file (or take a mapping) and apply ``key=value`` overrides.

    Args:
        source: a YAML file or an already-read mapping.
        overrides: ``section.key=value`` strings; values are read as YAML (``100``,
            ``1e-3``, ``null``, ``[1, 6]``) and type-checked like the file.

    Raises:
        FileNotFoundError: no such config file.
        ConfigError: a bad key or value (naming it), or an override without ``=``.
    """
    raw = read_yaml(source) if isinstance(source, (str, Path)) else source
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: the config must be a mapping of keys, got {type(raw).__name__}")
    raw = deep_copy(raw)
    for item in overrides:
        apply_override(raw, item)
    return TrainConfig.from_dict(raw)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``raw[a][b] = value`` for the override ``a.b=value`` (creating missing sections)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected key=value, e.g. data.train_size=100")
    *sections, last = key.strip().split(".")
    target = raw
    for i, section in enumerate(sections):
        node = target.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {'.'.join(sections[: i + 1])} is not a section")
        target = node
    target[last] = parse_value(text)
