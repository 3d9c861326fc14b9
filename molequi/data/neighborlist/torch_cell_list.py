"""Plain-torch cell list for one periodic structure whose cell holds at least 3 bins per periodic direction.

Atoms are wrapped into the cell and binned; bins are at least ``cutoff`` wide
(perpendicular to the lattice planes), so every neighbour of an atom lies in one of the
27 bins around its own. With 3 or more bins per periodic direction those 27
(bin, image) pairs are distinct, so no pair is produced twice. Cost ~ N * 27 * (atoms per bin).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

#: Bins are made this much (Angstrom) wider than the cutoff, against rounding.
BIN_MARGIN = 1e-6


def cell_list_candidates(pos: Tensor, cell: Tensor, pbc: Tensor, cutoff: float) -> tuple[Tensor, Tensor, Tensor] | None:
    """All (i, j, shift) with ``|pos[j] - pos[i] + shift @ cell| < cutoff`` for one structure.

    Args:
        pos: [n, 3] float64 positions.
        cell: [3, 3] float64 full-rank cell (rows; non-periodic rows completed, see
            :func:`~molequi.data.neighborlist.systems.complete_cell`).
        pbc: [3] bool.
        cutoff: search radius, Angstrom.

    Returns:
        i [E], j [E] (local atom indices) and shift [E, 3] long, self pairs included;
        or None when a periodic direction has fewer than 3 bins (use all pairs instead).
    """
    device = pos.device
    inv = torch.linalg.inv(cell)
    spacing = 1.0 / torch.linalg.norm(inv, dim=0)  # [3] distances between lattice planes
    frac = pos @ inv
    offset = torch.where(pbc, torch.floor(frac), torch.zeros_like(frac))
    frac = frac - offset
    low = torch.where(pbc, torch.zeros(3, dtype=frac.dtype, device=device), frac.min(dim=0).values)
    extent = torch.where(pbc, torch.ones(3, dtype=frac.dtype, device=device), frac.max(dim=0).values - low)
    n_bins = torch.floor(extent * spacing / (cutoff + BIN_MARGIN)).long().clamp(min=1)  # [3]
    if bool((pbc & (n_bins < 3)).any()):
        return None

    scaled = (frac - low) / extent.clamp(min=1e-300) * n_bins
    bins = torch.minimum(torch.floor(scaled).long().clamp(min=0), n_bins - 1)  # [n, 3]
    flat = (bins[:, 0] * n_bins[1] + bins[:, 1]) * n_bins[2] + bins[:, 2]
    num_bins = int(n_bins.prod())
    order = torch.argsort(flat)
    counts = torch.bincount(flat, minlength=num_bins)
    first = counts.cumsum(0) - counts
    rank = torch.arange(flat.numel(), device=device) - first[flat[order]]
    table = torch.full((num_bins, int(counts.max())), -1, dtype=torch.long, device=device)
    table[flat[order], rank] = order  # atoms of each bin, padded with -1

    steps = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), device=device)  # [27, 3]
    neighbour = bins[:, None, :] + steps[None]  # [n, 27, 3]
    shift = torch.where(pbc, torch.div(neighbour, n_bins, rounding_mode="floor"), torch.zeros_like(neighbour))
    inside = (pbc | ((neighbour >= 0) & (neighbour < n_bins))).all(dim=-1)  # [n, 27]
    neighbour = (neighbour - shift * n_bins).clamp(min=0)
    neighbour = torch.minimum(neighbour, n_bins - 1)
    neighbour_flat = (neighbour[..., 0] * n_bins[1] + neighbour[..., 1]) * n_bins[2] + neighbour[..., 2]
    j = table[neighbour_flat]  # [n, 27, M]
    valid = inside[:, :, None] & (j >= 0)
    i = torch.arange(pos.shape[0], device=device)[:, None, None].expand_as(j)[valid]
    shift = shift[:, :, None, :].expand(*j.shape, 3)[valid]
    j = j[valid]

    wrapped = pos - offset @ cell
    vec = wrapped[j] - wrapped[i] + shift.to(pos.dtype) @ cell
    keep = (vec * vec).sum(dim=1) < cutoff * cutoff
    i, j, shift = i[keep], j[keep], shift[keep]
    # wrapped_j - wrapped_i + s = pos_j - pos_i + (s + offset_i - offset_j)
    return i, j, shift + offset[i].long() - offset[j].long()
