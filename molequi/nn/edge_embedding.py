"""Edge geometry: vectors, lengths, spherical harmonics and radial embeddings, computed once per graph."""

from __future__ import annotations

import torch
from e3nn import o3

from .radial import RadialEmbedding, bessel_basis, bessel_frequencies, polynomial_cutoff

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


def spherical_harmonics_irreps(irreps_sh: o3.Irreps | str | int) -> o3.Irreps:
    """``irreps_sh`` as irreps; an ``int`` is ``lmax`` (``o3.Irreps.spherical_harmonics(lmax)``)."""
    if isinstance(irreps_sh, int):
        return o3.Irreps.spherical_harmonics(irreps_sh)
    return o3.Irreps(irreps_sh)


def embed_edges(
    edge_vec: torch.Tensor, irreps_sh: o3.Irreps | str | int, r_max: float, num_radial: int, cutoff_p: int = 6
) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``EdgeEmbedding(irreps_sh, r_max, num_radial, cutoff_p)(edge_vec)`` returns, without a module.

    For layers called with ``pos`` or ``edge_vec`` only: they embed on the fly and keep no state.

    Shapes:
        ``edge_vec [E, 3] -> (edge_sh [E, irreps_sh.dim], edge_radial [E, num_radial])``.
    """
    length = safe_norm(edge_vec)
    sh = o3.spherical_harmonics(
        spherical_harmonics_irreps(irreps_sh), edge_vec / length[:, None], normalize=False, normalization="component"
    )
    frequencies = bessel_frequencies(num_radial, r_max, edge_vec.dtype, edge_vec.device)
    radial = bessel_basis(length, frequencies, r_max) * polynomial_cutoff(length, r_max, cutoff_p)[..., None]
    return sh, radial


class EdgeEmbedding(torch.nn.Module):
    """Spherical harmonics of the edge direction and a radial embedding of its length.

    Args:
        irreps_sh: spherical-harmonic irreps, e.g. ``"1x0e+1x1o+1x2e"``, or ``lmax``.
        r_max: cutoff radius (Å).
        num_radial: number of Bessel functions.
        cutoff_p: polynomial-envelope exponent.

    Attributes:
        irreps_in: ``1x1o`` (the edge vector).
        irreps_out: ``irreps_sh + num_radial x 0e``: the two outputs side by side (returned apart).
        irreps_sh, irreps_radial: the irreps of each output.

    Shapes:
        ``edge_vec [E, 3] -> (edge_sh [E, irreps_sh.dim], edge_radial [E, num_radial])``.
    """

    def __init__(
        self, irreps_sh: o3.Irreps | str | int = 2, r_max: float = 5.0, num_radial: int = 8, cutoff_p: int = 6
    ) -> None:
        super().__init__()
        self.irreps_sh = spherical_harmonics_irreps(irreps_sh)
        self.irreps_radial = o3.Irreps(f"{num_radial}x0e")
        self.irreps_in, self.irreps_out = o3.Irreps("1x1o"), self.irreps_sh + self.irreps_radial
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=False, normalization="component")
        self.radial = RadialEmbedding(r_max, num_radial, cutoff_p)
        self.r_max, self.num_radial = float(r_max), num_radial

    def forward(self, edge_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``edge_vec [E, 3] -> (edge_sh [E, irreps_sh.dim], edge_radial [E, num_radial])``."""
        length = safe_norm(edge_vec)
        return self.spherical_harmonics(edge_vec / length[:, None]), self.radial(length)
