"""Model files as data, not pickles: loadable with ``torch.load(..., weights_only=True)``.

A model file is a dict ``{format_version, model, config, state_dict, statistics, units, versions}``
written atomically (temporary file, then ``os.replace``), so an interrupted write never leaves a
truncated file behind. The class a file names must be registered
(:func:`molequi.models.registry.register_model`; ``MODEL_CLASSES`` and ``register_model`` are
re-exported here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..dtypes import default_dtype
from ..io import atomic_torch_save
from .atomistic import AtomisticModel
from .energy_head import upgrade_state_dict
from .registry import MODEL_CLASSES, model_class, register_model

__all__ = ["FORMAT_VERSION", "MODEL_CLASSES", "UNITS", "load_model", "model_from_dict", "model_to_dict", "register_model", "save_model"]

FORMAT_VERSION = 1
UNITS = {"energy": "eV", "length": "Angstrom", "forces": "eV/Angstrom", "stress": "eV/Angstrom^3"}


def package_versions() -> dict[str, str]:
    """Versions of the packages a model file depends on."""
    import e3nn
    import torch_geometric

    from .. import __version__

    return {
        "molequi": str(__version__),
        "torch": str(torch.__version__),
        "e3nn": str(e3nn.__version__),
        "torch_geometric": str(torch_geometric.__version__),
    }


def model_to_dict(model: AtomisticModel, statistics: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data describing ``model`` (see the module docstring); tensors are moved to the CPU."""
    name = type(model).__name__
    if MODEL_CLASSES.get(name) is not type(model):
        raise ValueError(f"model class {name} is not registered; use molequi.models.register_model")
    return {
        "format_version": FORMAT_VERSION,
        "model": name,
        "config": model.config,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "statistics": statistics or {},
        "units": dict(UNITS),
        "versions": package_versions(),
    }


def save_model(model: AtomisticModel, path: str | os.PathLike, statistics: dict[str, Any] | None = None) -> None:
    """Write ``model`` to ``path`` atomically."""
    atomic_torch_save(model_to_dict(model, statistics), path)


def model_from_dict(record: dict[str, Any]) -> AtomisticModel:
    """Rebuild a model from :func:`model_to_dict`'s output (in its saved dtype, on the CPU)."""
    if record.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported model file format {record.get('format_version')!r} (expected {FORMAT_VERSION})")
    try:
        cls = model_class(record["model"])
    except ValueError as error:
        raise ValueError(f"model file names an {error}") from None
    dtype = getattr(torch, record.get("dtype", "float32"))
    with default_dtype(dtype):
        model = cls(**record["config"])
    model.load_state_dict(upgrade_state_dict(record["state_dict"]))
    return model


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> AtomisticModel:
    """Load a model file written by :func:`save_model` (``weights_only=True``: no code runs), in eval mode.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a molequi model file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"{path}: not a readable molequi model file ({error})") from error
    if isinstance(record, dict) and {"model", "optimizer"} <= record.keys():
        raise ValueError(f"{path}: this is a training checkpoint (for --resume); use model.pt of the same run")
    if not isinstance(record, dict) or "state_dict" not in record:
        raise ValueError(f"{path}: not a molequi model file (no state_dict)")
    model = model_from_dict(record)
    model.statistics = record.get("statistics", {})
    return model.to(map_location).eval()
