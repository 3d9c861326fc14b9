"""Streaming conversion of frames to graphs in batched chunks, with optional skipping."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch_geometric.data import Data

from molequi.data.graph import structures_to_graphs
from molequi.data.structure import Structure

#: Frames converted per batched neighbour-list call.
CHUNK_FRAMES = 256


def build_graphs(
    frames: Iterable[tuple[int, Structure | ValueError]],
    r_max: float,
    dtype: torch.dtype | None = None,
    elements: Iterable[int] | None = None,
    skip_invalid: bool = False,
) -> tuple[list[Data], list[list]]:
    """Convert a stream of frames to graphs, ``CHUNK_FRAMES`` at a time.

    Args:
        frames: ``(frame number, structure)``, or ``(frame number, error)`` for a frame
            that could not be read (e.g. a missing energy key).
        r_max, dtype, elements: see :func:`~molequi.data.graph.structures_to_graphs`.
        skip_invalid: leave out invalid frames (recording why) instead of raising.
            Every frame must carry the same targets as the first valid one.

    Returns:
        the graphs, and ``[[frame number, reason], ...]`` for every skipped frame.

    Raises:
        ValueError: for the first invalid frame unless ``skip_invalid``.
    """
    elements = None if elements is None else list(elements)
    graphs: list[Data] = []
    skipped: list[list] = []
    chunk: list[tuple[int, Structure]] = []
    expected: set[str] | None = None

    def reject(frame: int, error: ValueError) -> None:
        if not skip_invalid:
            raise error
        skipped.append([frame, str(error)])

    def flush() -> None:
        try:
            graphs.extend(structures_to_graphs([s for _, s in chunk], r_max, dtype, elements))
        except ValueError:
            if not skip_invalid:
                raise
            for frame, s in chunk:  # redo one by one to isolate the bad frames
                try:
                    graphs.extend(structures_to_graphs([s], r_max, dtype, elements))
                except ValueError as err:
                    reject(frame, err)
        chunk.clear()

    for frame, item in frames:
        if isinstance(item, ValueError):
            reject(frame, item)
            continue
        if expected is None:
            expected = set(item.targets)
        elif set(item.targets) != expected:
            have, want = sorted(item.targets) or ["none"], sorted(expected) or ["none"]
            reject(frame, ValueError(f"{item.where}: has targets {have} but the first frame has {want}; name the keys to require them"))
            continue
        chunk.append((frame, item))
        if len(chunk) >= CHUNK_FRAMES:
            flush()
    if chunk:
        flush()
    return graphs, skipped
