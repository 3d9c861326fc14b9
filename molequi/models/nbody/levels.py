r"""The levels of the N-body network on a neighbour graph: edge level and Clebsch-Gordan (atom) level.

The subsystem tiers above the atoms (fragments, molecules, top-down) are in
:mod:`molequi.models.nbody.tiers`.

Notation: ``F_i^s`` the covariant state of atom ``i`` after level ``s`` (irreps), ``g_ij^s`` the
invariant edge scalars (``lmax + 1`` groups of ``channels``, one group per degree ``l``),
``Y(r)`` spherical harmonics, :math:`\otimes` a channel-wise Clebsch-Gordan product and
``N`` the :class:`~molequi.models.nbody.features.SoftNorm`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from e3nn import o3
from e3nn.math import normalize2mom

from ...nn.conv import EquivariantConv
from ...nn.nonlinearities import build
from .features import SoftNorm


class CGSquare(torch.nn.Module):
    """The self-interaction of a state: a linear map, then the nonlinearity family ``nonlinearity``.

    With the default ``tensor_product`` family this is Cormorant's channel-wise Clebsch-Gordan
    square ``F (x) F`` (softly normalised, see
    :class:`~molequi.nn.nonlinearities.TensorProductActivation`); any other family of
    :func:`molequi.nn.nonlinearities.build` can be swapped in for ablation.

    Shapes:
        ``[..., irreps_in.dim] -> [..., irreps_out.dim]``.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        nonlinearity: str = "tensor_product",
        nonlinearity_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.activation = build(nonlinearity, irreps_out, **dict(nonlinearity_options or {}))
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), self.activation.irreps_out
        self.linear = o3.Linear(self.irreps_in, self.activation.irreps_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., irreps_in.dim] -> [..., irreps_out.dim]``."""
        return self.activation(self.linear(x))


class EdgeLevel(torch.nn.Module):
    r"""Edge scalars from both endpoint states, the previous edge scalars and the radial basis.

    .. math::
        g^{s+1}_{ij,l} = u(r_{ij})\, N\Big(\sigma\big(W_l [\langle F^s_i, F^s_j \rangle_l \oplus g^s_{ij,l}
        \oplus R(r_{ij})]\big)\Big)

    where :math:`\langle F_i, F_j \rangle_l` holds, per channel of every irrep of degree ``l``, the
    dot product over its ``2l + 1`` components divided by :math:`\sqrt{2l+1}` (invariant),
    ``R`` is the Bessel basis times the cutoff envelope, ``W_l`` a linear map per degree, ``sigma``
    a normalised SiLU, ``N`` the soft normalisation of each degree's group and ``u`` the envelope:
    edge scalars vanish smoothly at ``r_max``.

    Args:
        irreps_node: irreps of ``F^s``.
        lmax: edge scalars for degrees ``0..lmax``.
        channels: edge scalars per degree.
        num_radial: width of the radial basis.
        previous: whether ``g^s`` exists (every level but the first).

    Shapes:
        ``node [N, irreps_node.dim]``, ``edge_index [2, E]``, ``edge_radial [E, num_radial]``,
        ``cutoff [E]``, ``previous [E, (lmax + 1) * channels]`` ->
        ``[E, (lmax + 1) * channels]`` (degree-major), irreps ``((lmax + 1) * channels)x0e``.
    """

    def __init__(self, irreps_node: o3.Irreps | str, lmax: int, channels: int, num_radial: int, previous: bool) -> None:
        super().__init__()
        self.irreps_node = o3.Irreps(irreps_node)
        self.lmax, self.channels, self.previous = lmax, channels, previous
        self.irreps_out = o3.Irreps(f"{(lmax + 1) * channels}x0e")
        mixes = []
        for l in range(lmax + 1):
            width = sum(mul for mul, ir in self.irreps_node if ir.l == l) + (channels if previous else 0) + num_radial
            mixes.append(o3.Linear(f"{width}x0e", f"{channels}x0e"))
        self.mixes = torch.nn.ModuleList(mixes)
        self.act = normalize2mom(torch.nn.functional.silu)
        self.norm = SoftNorm(o3.Irreps([(channels, (0, 1))] * (lmax + 1)))

    def forward(
        self,
        node: torch.Tensor,
        edge_index: torch.Tensor,
        edge_radial: torch.Tensor,
        cutoff: torch.Tensor,
        previous: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """See the class docstring for shapes."""
        if self.previous != (previous is not None):
            raise ValueError(f"EdgeLevel(previous={self.previous}) called with previous={previous is not None}")
        node_j, node_i = node[edge_index[0]], node[edge_index[1]]  # [E, irreps_node.dim] each
        dots: list[list[torch.Tensor]] = [[] for _ in range(self.lmax + 1)]
        for (mul, ir), sl in zip(self.irreps_node, self.irreps_node.slices()):
            if ir.l <= self.lmax:
                shape = (-1, mul, ir.dim)
                dot = (node_i[:, sl].reshape(shape) * node_j[:, sl].reshape(shape)).sum(-1)  # [E, mul]
                dots[ir.l].append(dot / math.sqrt(ir.dim))
        groups = []
        for l, mix in enumerate(self.mixes):
            inputs = dots[l] + [edge_radial]
            if previous is not None:
                inputs.append(previous[:, l * self.channels : (l + 1) * self.channels])
            groups.append(self.act(mix(torch.cat(inputs, dim=-1))))
        return self.norm(torch.cat(groups, dim=-1)) * cutoff[:, None]


class AtomLevel(torch.nn.Module):
    r"""Cormorant's Clebsch-Gordan level ``s -> s + 1`` on a sparse neighbour graph.

    .. math::
        F^{s+1}_i = N\Big(W \big[F^s_i \oplus \sigma(F^s_i) \oplus
        \tfrac{1}{\sqrt{\bar n}} \textstyle\sum_{j} (W_{in} F^s_j)
        \otimes \big(Y(\hat r_{ij})\, w(g_{ij})\big)\big]\Big)

    The neighbour term is :class:`~molequi.nn.EquivariantConv` whose filter weights ``w`` (per path
    and channel) come from the edge scalars ``g`` through a bias-free MLP, so they vanish where
    ``g`` does (at ``r_max``); ``sigma`` is :class:`CGSquare` (the CG square by default); ``W``
    mixes the concatenation per irrep (``o3.Linear``), or with ``irreps_node_attr`` (a one-hot
    species ``"Sx0e"``) per irrep and per species of atom ``i`` (``W_{z_i}``, an
    ``o3.FullyConnectedTensorProduct`` with the attribute, as NequIP's self-interaction). The same
    level runs on the fragment graph (nodes: fragments; ``g``: the radial embedding of the centre
    distances, zero at its cutoff).

    Args:
        irreps_in, irreps_out: irreps of ``F^s`` and ``F^{s+1}``.
        irreps_sh: spherical harmonics of the edge filters.
        edge_features: width of ``g``.
        nonlinearity, nonlinearity_options: the family of :class:`CGSquare`.
        radial_hidden: hidden widths of the filter MLP.
        avg_num_neighbors: ``n-bar``.
        irreps_node_attr: irreps of ``node_attr`` for a species-dependent mix ``W``, or ``None``.

    Shapes:
        ``node [N, irreps_in.dim]``, ``edge_index [2, E]``, ``edge_sh [E, irreps_sh.dim]``,
        ``edge_features [E, edge_features]``, ``node_attr [N, irreps_node_attr.dim]`` ->
        ``[N, irreps_out.dim]``.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_sh: o3.Irreps | str,
        edge_features: int,
        nonlinearity: str = "tensor_product",
        nonlinearity_options: Mapping[str, Any] | None = None,
        radial_hidden: Sequence[int] = (32,),
        avg_num_neighbors: float = 10.0,
        irreps_node_attr: o3.Irreps | str | None = None,
    ) -> None:
        super().__init__()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.conv = EquivariantConv(
            self.irreps_in,
            self.irreps_out,
            irreps_sh,
            num_radial=edge_features,
            radial_hidden=tuple(radial_hidden),
            avg_num_neighbors=avg_num_neighbors,
        )
        self.square = CGSquare(self.irreps_in, self.irreps_out, nonlinearity, nonlinearity_options)
        irreps_mix = self.irreps_in + self.square.irreps_out + self.irreps_out
        self.mix: torch.nn.Module
        if irreps_node_attr is None:
            self.mix = o3.Linear(irreps_mix, self.irreps_out)
        else:
            self.mix = o3.FullyConnectedTensorProduct(irreps_mix, irreps_node_attr, self.irreps_out)
        self.norm = SoftNorm(self.irreps_out)

    def forward(
        self,
        node: torch.Tensor,
        edge_index: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_features: torch.Tensor,
        node_attr: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """See the class docstring for shapes."""
        messages = self.conv(node, None, edge_index, edge_sh=edge_sh, edge_radial=edge_features)  # [N, out]
        features = torch.cat([node, self.square(node), messages], dim=-1)
        if isinstance(self.mix, o3.Linear):
            return self.norm(self.mix(features))
        if node_attr is None:
            raise ValueError("AtomLevel(irreps_node_attr=...) needs node_attr")
        return self.norm(self.mix(features, node_attr))
