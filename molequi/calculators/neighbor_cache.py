"""A neighbour list with a skin, rebuilt only when atoms have moved far enough (Verlet list).

Edges are searched once within ``r_max + skin``. As long as no atom has moved more than
``skin / 2`` since that search (and the cell, periodicity and atom count are unchanged),
every pair closer than ``r_max`` is among the candidates, so each step only has to filter the
candidates to ``r_max``. The filter uses the same float64 formula and keeps the same order as
:func:`molequi.data.neighbor_list`, so the edges are exactly those of a fresh rebuild.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..data import neighbor_list
from ..nn.edge_embedding import edge_vectors


class Edges(NamedTuple):
    """The radius graph of one structure at the current positions.

    Attributes:
        edge_index: ``[2, E]`` long, row 0 source ``j``, row 1 target ``i`` (sorted by ``i, j, shift``).
        edge_shift: ``[E, 3]`` float64 integer cell shifts.
        length: ``[E]`` float64 edge lengths (Å).
    """

    edge_index: Tensor
    edge_shift: Tensor
    length: Tensor


class SkinNeighborList:
    """Radius graph of one structure that re-uses its candidate pairs between calls.

    Args:
        r_max: cutoff radius (Å, strict ``<``).
        skin: extra search radius (Å); the list is rebuilt once an atom has moved more than
            ``skin / 2`` from where it was at the last rebuild. ``0`` rebuilds every call.
        backend: neighbour-list backend (see :func:`molequi.data.neighbor_list`).

    Attributes:
        num_builds: how many times the candidates were searched (for tests and diagnostics).
    """

    def __init__(self, r_max: float, skin: float = 1.0, backend: str = "auto") -> None:
        if not r_max > 0 or not skin >= 0:
            raise ValueError(f"need r_max > 0 and skin >= 0, got r_max={r_max}, skin={skin}")
        self.r_max, self.skin, self.backend = float(r_max), float(skin), backend
        self.num_builds = 0
        self._reference: tuple[Tensor, Tensor, Tensor] | None = None  # pos [N, 3], cell [3, 3], pbc [3]
        self._candidates: tuple[Tensor, Tensor] | None = None  # edge_index [2, C], edge_shift [C, 3]

    def update(self, pos: Tensor, cell: Tensor, pbc: Tensor) -> Edges:
        """The edges shorter than ``r_max`` at ``pos``, rebuilding the candidates only if needed.

        Args:
            pos: ``[N, 3]`` float64 positions (Å), on the device the edges should live on.
            cell: ``[3, 3]`` float64 lattice vectors as rows (zeros when not periodic).
            pbc: ``[3]`` bool periodicity.
        """
        if self._needs_rebuild(pos, cell, pbc):
            self._candidates = neighbor_list(pos, self.r_max + self.skin, cell, pbc, backend=self.backend)
            self._reference = (pos.clone(), cell.clone(), pbc.clone())
            self.num_builds += 1
        edge_index, edge_shift = self._candidates
        vec = edge_vectors(pos, edge_index, edge_shift, cell)  # [C, 3]
        squared = (vec * vec).sum(dim=1)
        keep = torch.nonzero(squared < self.r_max * self.r_max).flatten()
        return Edges(edge_index[:, keep], edge_shift[keep], squared[keep].sqrt())

    def _needs_rebuild(self, pos: Tensor, cell: Tensor, pbc: Tensor) -> bool:
        if self._reference is None:
            return True
        ref_pos, ref_cell, ref_pbc = self._reference
        if pos.shape != ref_pos.shape or not torch.equal(cell, ref_cell) or not torch.equal(pbc, ref_pbc):
            return True
        displacement = (pos - ref_pos).square().sum(dim=1).max() if pos.shape[0] else pos.new_zeros(())
        return bool(displacement > (0.5 * self.skin) ** 2)
