"""Equivariant point convolution as a PyTorch Geometric ``MessagePassing`` layer."""

from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet
from torch_geometric.nn import MessagePassing

from ..edge_embedding import EdgeEmbedding, edge_vectors


class EquivariantConv(MessagePassing):
    r"""Tensor-product convolution on e3nn irreps (Tensor Field Networks, NequIP).

    .. math::
        x'_i = W_{out} \frac{1}{\sqrt{\bar n}} \sum_{j \in \mathcal N(i)}
               (W_{in} x_j) \otimes_{R(r_{ij})} Y(\hat r_{ij})

    The tensor product is channel-wise ("uvu": every input channel with every spherical harmonic),
    its path weights come from a radial MLP on a Bessel basis times a smooth polynomial cutoff
    envelope (so messages vanish smoothly at ``r_max``), and the sum over neighbours is divided by
    the square root of the average neighbour count ``avg_num_neighbors``.

    Args:
        irreps_in: node feature irreps, e.g. ``"32x0e+16x1o"``.
        irreps_out: output irreps; each must be reachable from ``irreps_in (x) irreps_sh``.
        irreps_sh: spherical harmonics, irreps or ``lmax`` (default 2).
        num_radial: number of Bessel functions (default 8).
        r_max: cutoff radius in Å (default 5.0).
        radial_hidden: hidden widths of the radial MLP (default ``(64, 64)``).
        avg_num_neighbors: normaliser of the sum aggregation (default 1.0; set it from the data).
        cutoff_p: exponent of the cutoff envelope (default 6).

    Shapes:
        - **input:** ``x [N, irreps_in.dim]``, ``pos [N, 3]``, ``edge_index [2, E]`` (PyG: row 0 is
          the source ``j``, row 1 the target ``i``); optionally ``edge_vec [E, 3]`` (from target to
          source, periodic images included) or precomputed ``edge_sh [E, irreps_sh.dim]`` and
          ``edge_radial [E, num_radial]``.
        - **output:** ``[N, irreps_out.dim]``.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_sh: o3.Irreps | str | int = 2,
        num_radial: int = 8,
        r_max: float = 5.0,
        radial_hidden: tuple[int, ...] = (64, 64),
        avg_num_neighbors: float = 1.0,
        cutoff_p: int = 6,
    ) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.edge_embedding = EdgeEmbedding(irreps_sh, r_max, num_radial, cutoff_p)
        self.irreps_sh = self.edge_embedding.irreps_sh
        self.avg_num_neighbors = float(avg_num_neighbors)

        wanted = {ir for _, ir in self.irreps_out}
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for k, (_, ir_sh) in enumerate(self.irreps_sh):
                for ir in ir_in * ir_sh:
                    if ir in wanted:
                        instructions.append((i, k, len(mid), "uvu", True))
                        mid.append((mul, ir))
        reached = {ir for _, ir in mid}
        missing = [str(ir) for ir in wanted if ir not in reached]
        if missing:
            raise ValueError(
                f"EquivariantConv: irreps_out {self.irreps_out} contains {', '.join(missing)}, which "
                f"irreps_in {self.irreps_in} (x) irreps_sh {self.irreps_sh} cannot produce"
            )
        self.irreps_mid = o3.Irreps(mid)
        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)
        self.tensor_product = o3.TensorProduct(
            self.irreps_in, self.irreps_sh, self.irreps_mid, instructions, shared_weights=False, internal_weights=False
        )
        self.radial_mlp = FullyConnectedNet(
            [num_radial, *radial_hidden, self.tensor_product.weight_numel], torch.nn.functional.silu
        )
        self.linear_out = o3.Linear(self.irreps_mid, self.irreps_out)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor | None,
        edge_index: torch.Tensor,
        edge_vec: torch.Tensor | None = None,
        edge_sh: torch.Tensor | None = None,
        edge_radial: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x [N, irreps_in.dim] -> [N, irreps_out.dim]`` (see the class docstring for the edge inputs)."""
        if edge_sh is None or edge_radial is None:
            if edge_vec is None:
                if pos is None:
                    raise ValueError("EquivariantConv: needs pos, edge_vec, or both edge_sh and edge_radial")
                edge_vec = edge_vectors(pos, edge_index)
            edge_sh, edge_radial = self.edge_embedding(edge_vec)
        weights = self.radial_mlp(edge_radial)
        aggregated = self.propagate(edge_index, x=self.linear_in(x), edge_sh=edge_sh, weights=weights)
        return self.linear_out(aggregated / math.sqrt(self.avg_num_neighbors))

    def message(self, x_j: torch.Tensor, edge_sh: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Per edge: ``x_j [E, irreps_in.dim] (x) edge_sh [E, irreps_sh.dim] -> [E, irreps_mid.dim]``."""
        return self.tensor_product(x_j, edge_sh, weights)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out}, sh={self.irreps_sh})"
