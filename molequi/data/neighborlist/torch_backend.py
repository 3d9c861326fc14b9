"""Plain-torch neighbour-list candidates, on any device.

Non-periodic graphs, and periodic cells too small for a cell list, are handled together
without Python loops over graphs: all pairs of every graph for every needed image, at
cost ``sum_g n_g^2 * n_images_g`` (the right choice for many small molecules). Periodic
cells with at least 3 cutoff-wide bins per periodic direction use a cell list
(:mod:`~molequi.data.neighborlist.torch_cell_list`), one graph at a time.
"""

from __future__ import annotations

import torch
from torch import Tensor

from molequi.data.neighborlist.systems import Systems
from molequi.data.neighborlist.torch_cell_list import cell_list_candidates

#: Candidate pairs processed per chunk (bounds the memory to a few hundred MB).
CHUNK_PAIRS = 1 << 22


def torch_candidates(systems: Systems, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
    """All (i, j, shift) with ``|pos[j] - pos[i] + shift @ cell| < cutoff``.

    Args:
        systems: the normalised batch.
        cutoff: search radius (Angstrom); callers pass a slightly enlarged ``r_max``.

    Returns:
        i [E] long (target), j [E] long (source), shift [E, 3] long, on ``pos.device``.
        Self pairs with zero shift are included; the caller removes them.
    """
    pos, device = systems.pos, systems.pos.device

    out_i, out_j, out_s = [], [], []
    counts = systems.counts().to(device)
    ptr = systems.ptr.to(device)
    if systems.any_periodic:
        handled = _cell_lists(systems, cutoff, out_i, out_j, out_s)
        wrapped, offset, shifts, shift_graph = _wrap_and_images(systems, cutoff)
        shift_vec = torch.einsum("ri,rij->rj", shifts.to(torch.float64), systems.full_cell[shift_graph])  # [R, 3]
        pairs_per_row = torch.where(handled[shift_graph], 0, counts[shift_graph] ** 2)  # [R]
    else:  # molecules: one row per graph, no images
        wrapped, offset, shift_vec = pos.to(torch.float64), None, None
        shift_graph = torch.arange(systems.num_graphs, device=device)
        shifts = torch.zeros(systems.num_graphs, 3, dtype=torch.long, device=device)
        pairs_per_row = counts**2  # [R]
    row_end = pairs_per_row.cumsum(0)
    row_start = row_end - pairs_per_row
    total = int(row_end[-1]) if row_end.numel() else 0
    cutoff_sq = cutoff * cutoff

    for start in range(0, total, CHUNK_PAIRS):
        flat = torch.arange(start, min(start + CHUNK_PAIRS, total), device=device)
        if total <= CHUNK_PAIRS:  # one chunk; searchsorted is slow on tiny CPU inputs
            row = torch.repeat_interleave(torch.arange(row_end.numel(), device=device), pairs_per_row)
        else:
            row = torch.searchsorted(row_end, flat, right=True)
        graph = shift_graph[row]
        n = counts[graph]
        local = flat - row_start[row]
        i = local // n + ptr[graph]
        j = local % n + ptr[graph]
        vec = wrapped[j] - wrapped[i]
        if shift_vec is not None:
            vec += shift_vec[row]
        keep = (vec * vec).sum(dim=1) < cutoff_sq
        i, j, shift = i[keep], j[keep], shifts[row[keep]]
        out_i.append(i)
        out_j.append(j)
        # Undo the wrapping: wrapped_j - wrapped_i + s = pos_j - pos_i + (s + o_i - o_j).
        out_s.append(shift if offset is None else shift + offset[i] - offset[j])
    if not out_i:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, torch.zeros(0, 3, dtype=torch.long, device=device)
    return torch.cat(out_i), torch.cat(out_j), torch.cat(out_s)


def _cell_lists(systems: Systems, cutoff: float, out_i: list, out_j: list, out_s: list) -> Tensor:
    """Run the cell list on every periodic graph whose cell is large enough, appending to the outputs.

    Returns:
        [B] bool, True for the graphs done here (the rest need all pairs).
    """
    handled = torch.zeros(systems.num_graphs, dtype=torch.bool, device=systems.pos.device)
    pos = systems.pos.to(torch.float64)
    ptr = systems.ptr.tolist()
    for g in systems.pbc.any(dim=1).nonzero().flatten().tolist():
        lo, hi = ptr[g], ptr[g + 1]
        found = cell_list_candidates(pos[lo:hi], systems.full_cell[g], systems.pbc[g], cutoff) if hi > lo else None
        if found is not None:
            out_i.append(found[0] + lo)
            out_j.append(found[1] + lo)
            out_s.append(found[2])
            handled[g] = True
    return handled


def _wrap_and_images(systems: Systems, cutoff: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Wrap atoms into their cell and list the lattice shifts each graph needs.

    Returns:
        wrapped [N, 3] float64 positions with ``pos = wrapped + offset @ cell``;
        offset [N, 3] long (zero in non-periodic directions);
        shifts [R, 3] long and their graph [R] long (see :func:`_enumerate_shifts`).
    """
    cell, periodic, batch = systems.full_cell, systems.pbc, systems.batch
    pos = systems.pos.to(torch.float64)
    inv = torch.linalg.inv(cell)  # [B, 3, 3]
    frac = torch.einsum("ni,nij->nj", pos, inv[batch])
    offset = torch.where(periodic[batch], torch.floor(frac), torch.zeros_like(frac))
    wrapped = pos - torch.einsum("ni,nij->nj", offset, cell[batch])
    # With wrapped atoms |frac_j - frac_i| < 1, so |shift| <= cutoff / plane spacing + 1 suffices.
    spacing = 1.0 / torch.linalg.norm(inv, dim=1)  # [B, 3] distances between lattice planes
    n_img = torch.where(
        periodic, torch.floor(cutoff / spacing).long() + 1, torch.zeros_like(periodic, dtype=torch.long)
    )
    shifts, shift_graph = _enumerate_shifts(n_img)
    return wrapped, offset.long(), shifts, shift_graph


def _enumerate_shifts(n_img: Tensor) -> tuple[Tensor, Tensor]:
    """All integer shifts in the box ``[-n, n]`` of every graph.

    Args:
        n_img: [B, 3] long, the largest |shift| per direction and graph.

    Returns:
        shifts [R, 3] long and their graph [R] long, grouped by graph.
    """
    width = 2 * n_img + 1  # [B, 3]
    per_graph = width.prod(dim=1)  # [B]
    graph = torch.repeat_interleave(torch.arange(n_img.shape[0], device=n_img.device), per_graph)
    local = torch.arange(graph.numel(), device=n_img.device) - (per_graph.cumsum(0) - per_graph)[graph]
    w = width[graph]
    sz = local % w[:, 2]
    sy = (local // w[:, 2]) % w[:, 1]
    sx = local // (w[:, 2] * w[:, 1])
    shifts = torch.stack([sx, sy, sz], dim=1) - n_img[graph]
    return shifts, graph
