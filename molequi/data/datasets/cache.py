"""Graph datasets that are built once and cached on disk as one collated file."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data, InMemoryDataset

from ...io import atomic_torch_save

#: Bump when the cached layout or the processing changes, to invalidate old caches.
CACHE_VERSION = 2


def default_cache_dir() -> Path:
    """``$MOLEQUI_CACHE_DIR`` if set, else ``~/.cache/molequi``."""
    return Path(os.environ.get("MOLEQUI_CACHE_DIR", Path.home() / ".cache" / "molequi"))


def file_identity(path: Path) -> dict[str, Any]:
    """Resolved path, size and modification time: a cheap fingerprint of a source file."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cache_file(cache_dir: str | Path | None, kind: str, options: dict[str, Any]) -> Path:
    """Cache path ``<cache_dir>/<kind>-<hash of options>.pt`` for JSON-able ``options``."""
    blob = json.dumps({"version": CACHE_VERSION, **options}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{kind}-{digest}.pt"


class GraphDataset(InMemoryDataset):
    """Collated molequi graphs with metadata, loaded from or written to a cache file.

    Subclasses compute their graphs in ``build`` and pass it here; indexing returns
    :class:`~torch_geometric.data.Data` graphs as described in :mod:`molequi.data.keys`.

    Args:
        path: cache file (see :func:`cache_file`).
        build: returns ``(graphs, meta)``; ``meta`` is a dict of plain Python values
            (stored with the graphs; ``meta["skipped"]`` lists ``[frame, reason]`` of
            frames left out).
        transform: PyG transform applied on access.
    """

    def __init__(
        self, path: Path, build: Callable[[], tuple[list[Data], dict[str, Any]]], transform: Callable | None = None
    ) -> None:
        super().__init__(root=None, transform=transform)
        self.cache_path = Path(path)
        if self.cache_path.exists():
            stored, slices, meta = torch.load(self.cache_path, weights_only=True)
            self.data, self.slices = Data.from_dict(stored), slices
        else:
            graphs, meta = build()
            if not graphs:
                raise ValueError(
                    f"{type(self).__name__}: no graphs to store (every frame was skipped or the source is empty)"
                )
            data, slices = self.collate(graphs)
            atomic_torch_save((data.to_dict(), slices, meta), self.cache_path)
            self.data, self.slices = data, slices
        self.meta: dict[str, Any] = meta
        if meta.get("skipped"):
            skipped = meta["skipped"]
            reasons = "; ".join(f"frame {frame}: {reason}" for frame, reason in skipped[:3])
            more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
            message = f"{type(self).__name__}: {len(skipped)} frame(s) skipped (counted from 0): {reasons}{more}"
            warnings.warn(message, stacklevel=3)
