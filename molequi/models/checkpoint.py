"""Model files as data, not pickles: loadable with ``torch.load(..., weights_only=True)``.

A model file is a dict ``{format_version, model, config, state_dict, statistics, units, versions}``
written atomically (temporary file, then ``os.replace``), so an interrupted write never leaves a
truncated file behind. The class a file names must be registered
(:func:`molequi.models.registry.register_model`; ``MODEL_CLASSES`` and ``register_model`` are
re-exported here). Files of an older format are upgraded on load (:func:`upgrade_state_dict`)
and give the same numbers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from ..dtypes import default_dtype
from ..io import atomic_torch_save
from . import energy_head
from .atomistic import AtomisticModel
from .registry import MODEL_CLASSES, model_class, register_model

__all__ = [
    "FORMAT_VERSION",
    "MODEL_CLASSES",
    "UNITS",
    "load_model",
    "model_from_dict",
    "model_to_dict",
    "package_versions",
    "register_model",
    "save_model",
    "upgrade_state_dict",
]

#: Format of the files :func:`save_model` writes (2: the convolutions hold no edge embedding).
FORMAT_VERSION = 2
UNITS = {"energy": "eV", "length": "Angstrom", "forces": "eV/Angstrom", "stress": "eV/Angstrom^3"}

#: Format 1 -> 2: keys of the convolutions' unused edge embeddings, dropped.
_REMOVED_IN_2 = re.compile(r"(^|\.)conv\.edge_embedding\.")


def upgrade_state_dict(
    state_dict: dict[str, torch.Tensor], version: int, model: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """``state_dict`` of a format-``version`` file in the layout of ``model`` (built from the file's config).

    Format 1 -> 2: the keys of the convolutions' edge embeddings are dropped, the energy head's
    buffers are renamed (:func:`molequi.models.energy_head.upgrade_state_dict`), and buffers that
    ``model`` has but the file lacks (constants its config determines) are taken from ``model``.

    Raises:
        ValueError: ``version`` is not a format this code reads.
    """
    if version == FORMAT_VERSION:
        return state_dict
    if version != 1:
        raise ValueError(f"unsupported model file format {version!r} (this molequi reads 1 to {FORMAT_VERSION})")
    kept = {key: value for key, value in state_dict.items() if not _REMOVED_IN_2.search(key)}
    upgraded = energy_head.upgrade_state_dict(kept)
    buffers = {name for name, _ in model.named_buffers()}
    for key, value in model.state_dict().items():
        if key not in upgraded and key in buffers:
            upgraded[key] = value
    return upgraded


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
    """Rebuild a model from :func:`model_to_dict`'s output (in its saved dtype, on the CPU); older formats are upgraded.

    Raises:
        ValueError: an unknown format version or model class.
    """
    version = record.get("format_version")
    if version not in range(1, FORMAT_VERSION + 1):
        raise ValueError(f"unsupported model file format {version!r} (this molequi reads 1 to {FORMAT_VERSION})")
    try:
        cls = model_class(record["model"])
    except ValueError as error:
        raise ValueError(f"model file names an {error}") from None
    dtype = getattr(torch, record.get("dtype", "float32"))
    with default_dtype(dtype):
        model = cls(**record["config"])
    model.load_state_dict(upgrade_state_dict(record["state_dict"], version, model))
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
