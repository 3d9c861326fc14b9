"""Edge geometry: vectors, lengths, spherical harmonics and radial embeddings, computed once per graph."""

from __future__ import annotations

import torch
from e3nn import o3

from .radial import RadialEmbedding

_MIN_SQUARED_LENGTH = 1e-12


def edge_vectors(
    pos: torch.Tensor,
    edge_index: torch.Tensor,
    edge_shift: torch.Tensor | None = None,
    cell: torch.Tensor | None = None,
    batch: torch.Tensor | None = None,
) -> torch.Tensor:
    """``edge_vec [E, 3] = pos[j] - pos[i] + edge_shift @ cell``: from target ``i`` to the image of source ``j``.

    Args:
        pos: ``[N, 3]`` positions.
        edge_index: ``[2, E]``, ``edge_index[0]`` = source ``j``, ``edge_index[1]`` = target ``i``.
        edge_shift: ``[E, 3]`` integer cell shifts (as floats), or ``None`` for no periodicity.
        cell: ``[num_graphs, 3, 3]`` (or ``[3, 3]``) cell vectors as rows.
        batch: ``[N]`` graph of each node (default: all in graph 0).
    """
    source, target = edge_index
    vec = pos[source] - pos[target]
    if edge_shift is None or cell is None:
        return vec
    cell = cell.reshape(-1, 3, 3)
    edge_graph = batch[target] if batch is not None else torch.zeros_like(target)
    return vec + torch.einsum("ek,ekx->ex", edge_shift.to(pos.dtype), cell[edge_graph])


def safe_norm(vec: torch.Tensor) -> torch.Tensor:
    """``|vec|`` over the last axis with a finite gradient at 0 (``[..., 3] -> [...]``)."""
    return torch.sqrt(torch.clamp((vec * vec).sum(-1), min=_MIN_SQUARED_LENGTH))


class EdgeEmbedding(torch.nn.Module):
    """Spherical harmonics of the edge direction and a radial embedding of its length.

    Args:
        irreps_sh: spherical-harmonic irreps, e.g. ``"1x0e+1x1o+1x2e"`` (``o3.Irreps.spherical_harmonics(lmax)``).
        r_max: cutoff radius (Å).
        num_radial: number of Bessel functions.
        cutoff_p: polynomial-envelope exponent.

    Shapes:
        ``edge_vec [E, 3] -> (edge_sh [E, irreps_sh.dim], edge_radial [E, num_radial])``.
    """

    def __init__(
        self, irreps_sh: o3.Irreps | str | int = 2, r_max: float = 5.0, num_radial: int = 8, cutoff_p: int = 6
    ) -> None:
        super().__init__()
        if isinstance(irreps_sh, int):
            irreps_sh = o3.Irreps.spherical_harmonics(irreps_sh)
        self.irreps_sh = o3.Irreps(irreps_sh)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=False, normalization="component")
        self.radial = RadialEmbedding(r_max, num_radial, cutoff_p)
        self.r_max, self.num_radial = float(r_max), num_radial

    def forward(self, edge_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``edge_vec [E, 3] -> (edge_sh [E, irreps_sh.dim], edge_radial [E, num_radial])``."""
        length = safe_norm(edge_vec)
        return self.spherical_harmonics(edge_vec / length[:, None]), self.radial(length)
