"""Build the configured model, filling its normalisation arguments from the training-set statistics."""

from __future__ import annotations

import inspect
from typing import Any

from ..data.statistics import DatasetStatistics
from ..models.atomistic import AtomisticModel
from ..models.registry import MODEL_CLASSES
from .config import ModelConfig


def model_r_max(config: ModelConfig) -> float:
    """The cutoff of the configured model (its ``r_max`` option or the constructor's default).

    Raises:
        ValueError: the model class takes no ``r_max``.
    """
    parameter = inspect.signature(MODEL_CLASSES[config.name].__init__).parameters.get("r_max")
    if parameter is None:
        raise ValueError(f"model {config.name} has no r_max argument; the trainer needs a cutoff to build graphs")
    return float(config.options.get("r_max", parameter.default))


def statistics_arguments(statistics: DatasetStatistics) -> dict[str, Any]:
    """Constructor arguments from the statistics.

    ``species`` = elements of the training set; ``atomic_energies`` = E0 per element;
    ``avg_num_neighbors``; ``scale`` = force RMS (the per-atom energy standard deviation for
    energy-only data, 1 when that is 0 too); ``shift`` = mean per-atom energy residual after E0;
    with an intensive target (e.g. a QM9 gap), ``intensive_shift`` / ``intensive_scale`` = its mean
    and standard deviation (1 when that is 0).
    """
    scale = statistics.force_rms if statistics.force_rms else statistics.per_atom_energy_std
    arguments = {
        "species": list(statistics.elements),
        "atomic_energies": statistics.atomic_energy_map(),
        "avg_num_neighbors": statistics.avg_num_neighbors,
        "scale": scale if scale else 1.0,
        "shift": statistics.per_atom_energy_mean or 0.0,
    }
    if statistics.intensive_mean is not None:
        arguments.update(intensive_shift=statistics.intensive_mean, intensive_scale=statistics.intensive_std or 1.0)
    return arguments


def model_arguments(config: ModelConfig, statistics: DatasetStatistics) -> dict[str, Any]:
    """The configured options plus the statistics-derived ones that the config leaves out.

    Only arguments that the model class accepts are filled.
    """
    accepted = inspect.signature(MODEL_CLASSES[config.name].__init__).parameters
    derived = statistics_arguments(statistics)
    filled = {key: value for key, value in derived.items() if key in accepted and key not in config.options}
    return {**config.options, **filled}


def build_model(name: str, arguments: dict[str, Any]) -> AtomisticModel:
    """``MODEL_CLASSES[name](**arguments)`` in the current default dtype."""
    return MODEL_CLASSES[name](**arguments)
