"""Streaming conversion of frames to graphs in batched chunks, with optional skipping."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch_geometric.data import Data

from molequi.data import keys
from molequi.data.graph import structures_to_graphs
from molequi.data.structure import Structure

#: Frames converted per batched neighbour-list call.
CHUNK_FRAMES = 256
#: Graph attributes that describe the structure, not a target.
_STRUCTURE_KEYS = {
    keys.ATOMIC_NUMBERS, keys.POSITIONS, keys.EDGE_INDEX, keys.EDGE_SHIFT, keys.CELL, keys.PBC, keys.R_MAX
}  # fmt: skip


def build_graphs(
    frames: Iterable[tuple[int, Structure | ValueError]],
    r_max: float,
    dtype: torch.dtype | None = None,
    elements: Iterable[int] | None = None,
    skip_invalid: bool = False,
    fill_missing: bool = False,
) -> tuple[list[Data], list[list]]:
    """Convert a stream of frames to graphs, ``CHUNK_FRAMES`` at a time.

    Args:
        frames: ``(frame number, structure)``, or ``(frame number, error)`` for a frame
            that could not be read (e.g. a missing energy key).
        r_max, dtype, elements: see :func:`~molequi.data.graph.structures_to_graphs`.
        skip_invalid: leave out invalid frames (recording why) instead of raising.
        fill_missing: allow frames to differ in which targets they carry: a target that
            some frames lack is filled with zeros there, and every graph gets a
            ``has_<target>`` flag (see :func:`fill_missing_targets`). Otherwise every
            frame must carry the same targets as the first one.

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
        elif set(item.targets) != expected and not fill_missing:
            have, want = sorted(item.targets) or ["none"], sorted(expected) or ["none"]
            reject(
                frame,
                ValueError(
                    f"{item.where}: has targets {have} but the first frame has {want}; "
                    "pass fill_missing=True to fill the gaps with flagged zeros"
                ),
            )
            continue
        chunk.append((frame, item))
        if len(chunk) >= CHUNK_FRAMES:
            flush()
    if chunk:
        flush()
    if fill_missing:
        fill_missing_targets(graphs)
    return graphs, skipped


def fill_missing_targets(graphs: list[Data]) -> None:
    """Give every graph every target that some graph has (zeros where absent), in place.

    For each such target ``t`` all graphs get ``has_<t>`` ([1] bool): False marks a
    zero placeholder. Targets every graph has get no flag.
    """
    templates: dict[str, torch.Tensor] = {}
    for graph in graphs:
        for key in graph.keys():
            if key not in templates and key not in _STRUCTURE_KEYS:
                templates[key] = graph[key]
    for key, template in templates.items():
        present = [key in graph for graph in graphs]
        if all(present):
            continue
        for graph, has in zip(graphs, present):
            if not has:
                shape = (graph.num_nodes, *template.shape[1:]) if key == keys.FORCES else template.shape
                graph[key] = torch.zeros(shape, dtype=template.dtype)
            graph[keys.availability_key(key)] = torch.tensor([has])
