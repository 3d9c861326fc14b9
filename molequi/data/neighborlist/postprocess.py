"""The common last step of every backend: exact distance filter and canonical edge order.

Backends search with a slightly enlarged radius; this filter then decides every edge
with one float64 formula, so all backends return exactly the same edge set.
"""

from __future__ import annotations

import torch
from torch import Tensor

from molequi.data.neighborlist.systems import Systems


def finalize_edges(
    systems: Systems,
    i: Tensor,
    j: Tensor,
    shift: Tensor,
    r_max: float,
    self_interaction: bool,
) -> tuple[Tensor, Tensor]:
    """Keep the pairs with ``|pos[j] - pos[i] + shift @ cell| < r_max`` and sort them.

    Args:
        systems: the normalised batch.
        i: [E'] long target atoms; j: [E'] long source atoms; shift: [E', 3] long.
        r_max: cutoff radius (strict ``<``), Angstrom.
        self_interaction: add the pairs (i, i, 0); otherwise they are removed.

    Returns:
        edge_index [2, E] long (row 0 source j, row 1 target i), sorted by
        (target, source, shift); edge_shift [E, 3] in the dtype of ``pos``.
    """
    pos = systems.pos.detach().to(torch.float64)
    vec = pos[j] - pos[i]
    if systems.any_periodic:
        vec += torch.einsum("ei,eij->ej", shift.to(torch.float64), systems.cell[systems.batch[i]])
    keep = (vec * vec).sum(dim=1) < r_max * r_max
    keep &= ~((i == j) & (shift == 0).all(dim=1))
    i, j, shift = i[keep], j[keep], shift[keep]
    if self_interaction:
        atoms = torch.arange(pos.shape[0], device=pos.device)
        i, j = torch.cat([i, atoms]), torch.cat([j, atoms])
        shift = torch.cat([shift, torch.zeros(pos.shape[0], 3, dtype=shift.dtype, device=pos.device)])
    order = _canonical_order(i, j, shift, pos.shape[0])
    edge_index = torch.stack([j[order], i[order]])
    return edge_index, shift[order].to(systems.pos.dtype)


def _canonical_order(i: Tensor, j: Tensor, shift: Tensor, num_atoms: int) -> Tensor:
    """Permutation sorting edges lexicographically by (i, j, shift_x, shift_y, shift_z)."""
    if i.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=i.device)
    low = shift.min()
    width = int(shift.max() - low) + 1
    code = ((shift[:, 0] - low) * width + (shift[:, 1] - low)) * width + (shift[:, 2] - low)
    pair = i * num_atoms + j
    if num_atoms**2 * width**3 < 2**62:  # one int64 key
        key = pair * width**3 + code
        if bool((key[1:] >= key[:-1]).all()):  # molecules from the torch backend come sorted
            return torch.arange(key.numel(), device=key.device)
        return torch.sort(key, stable=True).indices
    order = torch.sort(code, stable=True).indices
    return order[torch.sort(pair[order], stable=True).indices]
