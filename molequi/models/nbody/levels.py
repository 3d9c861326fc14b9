r"""The levels of the N-body network: edge level, atom (Clebsch-Gordan) level and parent level.

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
from e3nn.nn import FullyConnectedNet

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
    mixes the concatenation per irrep (``o3.Linear``).

    Args:
        irreps_in, irreps_out: irreps of ``F^s`` and ``F^{s+1}``.
        irreps_sh: spherical harmonics of the edge filters.
        edge_features: width of ``g``.
        nonlinearity, nonlinearity_options: the family of :class:`CGSquare`.
        radial_hidden: hidden widths of the filter MLP.
        avg_num_neighbors: ``n-bar``.

    Shapes:
        ``node [N, irreps_in.dim]``, ``edge_index [2, E]``, ``edge_sh [E, irreps_sh.dim]``,
        ``edge_features [E, edge_features]`` -> ``[N, irreps_out.dim]``.
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
        self.mix = o3.Linear(self.irreps_in + self.square.irreps_out + self.irreps_out, self.irreps_out)
        self.norm = SoftNorm(self.irreps_out)

    def forward(
        self, node: torch.Tensor, edge_index: torch.Tensor, edge_sh: torch.Tensor, edge_features: torch.Tensor
    ) -> torch.Tensor:
        """See the class docstring for shapes."""
        messages = self.conv(node, None, edge_index, edge_sh=edge_sh, edge_radial=edge_features)  # [N, out]
        return self.norm(self.mix(torch.cat([node, self.square(node), messages], dim=-1)))


class DisplacementEmbedding(torch.nn.Module):
    r"""Child-to-parent displacements ``d`` -> solid harmonics and a smooth radial basis.

    ``u = d / sqrt(length^2 + |d|^2)`` (``|u| < 1``); returns :math:`|u|^l Y_l(\hat u)` (e3nn's
    unnormalised, component-normalised spherical harmonics: polynomials in ``u``) and Gaussians
    of ``|u|^2`` centred on ``num_basis`` points of ``[0, 1]`` (scaled to unit mean square). Both
    are smooth functions of ``d``, also at ``d = 0`` (a child at its parent's centre, e.g. a heavy
    atom without hydrogens, alone in its fragment).

    Shapes:
        ``d [C, 3] -> (sh [C, irreps_sh.dim], basis [C, num_basis])``.
    """

    def __init__(self, lmax: int, length: float, num_basis: int = 8) -> None:
        super().__init__()
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=False, normalization="component")
        self.length, self.num_basis = float(length), num_basis
        self.register_buffer("centres", torch.linspace(0.0, 1.0, num_basis), persistent=False)
        # sum_k exp(-2 ((t - c_k) (K - 1))^2) ~ sqrt(pi / 2): this scale gives the basis unit mean square
        self.basis_scale = math.sqrt(num_basis / math.sqrt(math.pi / 2.0))

    def forward(self, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``d [C, 3] -> (sh [C, irreps_sh.dim], basis [C, num_basis])``."""
        squared = d.pow(2).sum(-1, keepdim=True)  # [C, 1]
        u = d * torch.rsqrt(self.length**2 + squared)
        t = squared / (self.length**2 + squared)  # |u|^2 in [0, 1)
        basis = torch.exp(-((t - self.centres) * (self.num_basis - 1)).pow(2)) * self.basis_scale
        return self.spherical_harmonics(u), basis


class ParentLevel(torch.nn.Module):
    r"""A parent's state from its children: CG aggregation, then CG-product nonlinearity.

    .. math::
        A_p = \tfrac{1}{\sqrt{n_p}} \textstyle\sum_{c \in p} (W_{in} X_c) \otimes \big(Y(u_{cp})\, w(|u_{cp}|^2)\big),
        \qquad P_p = N\big(W [A_p \oplus \sigma(A_p)]\big)

    with ``u_cp`` the squashed child-to-parent displacement (:class:`DisplacementEmbedding`),
    ``w`` per path and channel from a bias-free MLP, ``n_p`` the parent's child count, ``sigma``
    :class:`CGSquare` and ``N`` the soft normalisation.

    Args:
        irreps_in, irreps_out: child and parent irreps.
        lmax: degree of the displacement harmonics.
        length: length scale of the displacement squashing (Å).
        nonlinearity, nonlinearity_options: the family of :class:`CGSquare`.
        num_basis: radial basis width; radial_hidden: hidden widths of the filter MLP.

    Shapes:
        ``children [C, irreps_in.dim]``, ``displacement [C, 3]`` (parent centre minus child
        position), ``parent [C]`` (index in ``0..P-1``), ``child_count [P]`` -> ``[P, irreps_out.dim]``.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        lmax: int,
        length: float,
        nonlinearity: str = "tensor_product",
        nonlinearity_options: Mapping[str, Any] | None = None,
        num_basis: int = 8,
        radial_hidden: Sequence[int] = (32,),
    ) -> None:
        super().__init__()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.embedding = DisplacementEmbedding(lmax, length, num_basis)
        wanted = {ir for _, ir in self.irreps_out}
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for k, (_, ir_sh) in enumerate(self.embedding.irreps_sh):
                for ir in ir_in * ir_sh:
                    if ir in wanted:
                        instructions.append((i, k, len(mid), "uvu", True))
                        mid.append((mul, ir))
        irreps_mid = o3.Irreps(mid)
        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)
        self.tensor_product = o3.TensorProduct(
            self.irreps_in,
            self.embedding.irreps_sh,
            irreps_mid,
            instructions,
            shared_weights=False,
            internal_weights=False,
        )
        self.filter_mlp = FullyConnectedNet(
            [num_basis, *radial_hidden, self.tensor_product.weight_numel], torch.nn.functional.silu
        )
        self.linear_out = o3.Linear(irreps_mid, self.irreps_out)
        self.square = CGSquare(self.irreps_out, self.irreps_out, nonlinearity, nonlinearity_options)
        self.mix = o3.Linear(self.irreps_out + self.square.irreps_out, self.irreps_out)
        self.norm = SoftNorm(self.irreps_out)

    def forward(
        self, children: torch.Tensor, displacement: torch.Tensor, parent: torch.Tensor, child_count: torch.Tensor
    ) -> torch.Tensor:
        """See the class docstring for shapes."""
        sh, basis = self.embedding(displacement)  # [C, sh], [C, num_basis]
        messages = self.tensor_product(self.linear_in(children), sh, self.filter_mlp(basis))  # [C, mid]
        summed = messages.new_zeros(child_count.shape[0], messages.shape[1]).index_add(0, parent, messages)
        aggregated = self.linear_out(summed * child_count.to(summed.dtype).clamp(min=1).rsqrt()[:, None])
        return self.norm(self.mix(torch.cat([aggregated, self.square(aggregated)], dim=-1)))
