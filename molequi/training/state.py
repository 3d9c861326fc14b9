"""The resumable state of a run: random-number generator states, the checkpoint file, and what a resume may change.

``checkpoint.pt`` holds only tensors and plain Python values, so it loads with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_torch_save

CHECKPOINT_FORMAT = "molequi-training-checkpoint"
CHECKPOINT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's (CPU and CUDA) generators, as tensors and plain values."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"name": name, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators from :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["key"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write the run state atomically (tagged with the checkpoint format and version)."""
    atomic_torch_save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a (readable) molequi training checkpoint, or another version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise ValueError(f"{path}: not a readable checkpoint ({error})") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a molequi training checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {state.get('version')} is not supported (expected {CHECKPOINT_VERSION})")
    return state


#: Config keys that may differ between a checkpoint and the run that resumes it.
RESUMABLE_CHANGES = frozenset(
    {"max_epochs", "max_minutes", "budget_clock", "device", "progress_bar", "plots", "tensorboard", "early_stopping_patience",
     "eval_batch_size", "output_dir", "data.cache_dir"}
)  # fmt: skip


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    """``{"data": {"path": p}}`` -> ``{"data.path": p}`` (sections are one level deep)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update({f"{key}.{name}": item for name, item in value.items()})
        else:
            out[key] = value
    return out


def check_resumable(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Reject a resume whose config differs from the checkpoint's beyond :data:`RESUMABLE_CHANGES`."""
    old, new = _flatten(saved), _flatten(current)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        details = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ValueError(f"cannot resume: the config differs from the checkpoint's in {details} (only {', '.join(sorted(RESUMABLE_CHANGES))} may change)")
