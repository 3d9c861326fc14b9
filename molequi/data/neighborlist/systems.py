"""Normalisation of the inputs of :func:`~molequi.data.neighbor_list` into one batch form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Systems:
    """A batch of (possibly periodic) structures in the form every backend consumes.

    Attributes:
        pos: [N, 3] positions (Angstrom), any float dtype.
        cell: [B, 3, 3] float64 lattice vectors as rows, as given (zeros if non-periodic).
        full_cell: [B, 3, 3] float64 cell completed to full rank: lattice vectors of
            non-periodic directions are replaced by unit vectors orthogonal to the
            periodic ones. Identical to ``cell`` in periodic directions, so
            ``shift @ full_cell == shift @ cell`` for every shift the backends produce.
        pbc: [B, 3] bool periodicity.
        batch: [N] long graph of every atom (sorted).
        ptr: [B + 1] long first atom of every graph (CPU tensor).
    """

    pos: Tensor
    cell: Tensor
    full_cell: Tensor
    pbc: Tensor
    batch: Tensor
    ptr: Tensor

    @property
    def num_graphs(self) -> int:
        return self.cell.shape[0]

    @property
    def any_periodic(self) -> bool:
        return bool(self.pbc.any())

    def counts(self) -> Tensor:
        """[B] number of atoms of each graph (CPU)."""
        return self.ptr[1:] - self.ptr[:-1]


def make_systems(pos: Tensor, cell: Tensor | None, pbc: Tensor | bool | None, batch: Tensor | None) -> Systems:
    """Check and broadcast the arguments of :func:`~molequi.data.neighbor_list`.

    Args:
        pos: [N, 3] float positions.
        cell: None, [3, 3] or [B, 3, 3] lattice vectors as rows.
        pbc: None, a bool, [3] or [B, 3] booleans.
        batch: None or [N] long graph index of every atom, sorted ascending.

    Raises:
        ValueError: on wrong shapes, non-finite values, an unsorted ``batch`` or a
            periodic direction whose lattice vectors are linearly dependent.
    """
    if pos.dim() != 2 or pos.shape[1] != 3 or not pos.is_floating_point():
        raise ValueError(f"pos must be a float tensor of shape [N, 3], got {tuple(pos.shape)} {pos.dtype}")
    device = pos.device
    if batch is None:
        batch = torch.zeros(pos.shape[0], dtype=torch.long, device=device)
    elif batch.shape != (pos.shape[0],):
        raise ValueError(f"batch must have shape [{pos.shape[0]}], got {tuple(batch.shape)}")
    elif batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("batch must be sorted ascending (atoms of one graph contiguous)")
    batch = batch.long()
    num_graphs = int(batch[-1]) + 1 if batch.numel() else 1

    if cell is None:
        cell = torch.zeros(num_graphs, 3, 3, dtype=torch.float64, device=device)
    cell = torch.as_tensor(cell, device=device).to(torch.float64)
    if cell.dim() == 2:
        cell = cell.unsqueeze(0)
    if cell.shape[-2:] != (3, 3):
        raise ValueError(f"cell must have shape [3, 3] or [B, 3, 3], got {tuple(cell.shape)}")
    num_graphs = max(num_graphs, cell.shape[0])
    cell = cell.expand(num_graphs, 3, 3) if cell.shape[0] == 1 else cell
    if cell.shape[0] != num_graphs:
        raise ValueError(f"cell has {cell.shape[0]} rows but batch describes {num_graphs} graphs")

    pbc_t = torch.as_tensor(False if pbc is None else pbc, dtype=torch.bool, device=device)
    if pbc_t.dim() == 0:
        pbc_t = pbc_t.expand(3)
    if pbc_t.shape[-1] != 3 or pbc_t.dim() > 2:
        raise ValueError(f"pbc must be a bool, [3] or [B, 3], got shape {tuple(pbc_t.shape)}")
    pbc_t = pbc_t.expand(num_graphs, 3) if pbc_t.dim() == 1 or pbc_t.shape[0] == 1 else pbc_t
    if pbc_t.shape[0] != num_graphs:
        raise ValueError(f"pbc has {pbc_t.shape[0]} rows but there are {num_graphs} graphs")

    if not bool(torch.isfinite(pos).all()) or not bool(torch.isfinite(cell).all()):
        raise ValueError("positions and cell must be finite (found NaN or inf)")

    counts = torch.bincount(batch.cpu(), minlength=num_graphs)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    full_cell = complete_cell(cell, pbc_t)
    return Systems(pos=pos, cell=cell, full_cell=full_cell, pbc=pbc_t.contiguous(), batch=batch, ptr=ptr)


def complete_cell(cell: Tensor, pbc: Tensor) -> Tensor:
    """Complete lattice vectors to a full-rank basis, keeping the periodic ones.

    Args:
        cell: [B, 3, 3] float64 lattice vectors as rows.
        pbc: [B, 3] bool.

    Returns:
        [B, 3, 3] float64: periodic rows unchanged, non-periodic rows replaced by an
        orthonormal completion of the span of the periodic rows.

    Raises:
        ValueError: if the periodic rows of a graph are linearly dependent.
    """
    num_graphs = cell.shape[0]
    eye = torch.eye(3, dtype=cell.dtype, device=cell.device)
    if not bool(pbc.any()):
        return eye.expand(num_graphs, 3, 3)
    out = eye.repeat(num_graphs, 1, 1)
    fully = pbc.all(dim=1)
    if bool(fully.any()):
        volume = torch.linalg.det(cell[fully]).abs()
        if bool((volume < 1e-10).any()):
            bad = fully.nonzero().flatten()[volume < 1e-10].tolist()
            raise ValueError(f"cell of graph(s) {bad} is singular but all directions are periodic")
        out[fully] = cell[fully]
    for g in (pbc.any(dim=1) & ~fully).nonzero().flatten().tolist():
        periodic = pbc[g].nonzero().flatten().tolist()
        vectors = cell[g, periodic]
        if int(torch.linalg.matrix_rank(vectors)) < len(periodic):
            raise ValueError(f"periodic lattice vectors of graph {g} are linearly dependent or zero")
        # Rows of vh beyond the rank span the orthogonal complement of the periodic rows.
        _, _, vh = torch.linalg.svd(vectors, full_matrices=True)
        out[g, periodic] = vectors
        out[g, [k for k in range(3) if k not in periodic]] = vh[len(periodic) :]
    return out
