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

    The forward pass does not run e3nn's per-edge ``TensorProduct`` module (kept as
    ``self.tensor_product``, and used by :meth:`message`, as the reference definition). It computes
    the same numbers, up to floating-point rounding, in a few large batched operations: for each
    input irrep block, the Clebsch-Gordan coefficients of all its paths are contracted with the
    spherical harmonics once per edge (``[E, d_in, D]``), one batched matrix product applies that
    to the gathered source features (``[E, mul, d_in] @ [E, d_in, D]``), the radial weights
    multiply it, and ``index_add_`` sums it into the target nodes; the outputs are then put in
    ``irreps_mid`` order on the nodes (``N << E``). Set ``conv.fused = False`` to run the reference
    path (PyG ``propagate`` with e3nn's module) instead.

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
        #: Run the fused per-edge tensor product (default) or the reference e3nn module via ``propagate``.
        self.fused = True
        self._build_fused_plan()

    def _build_fused_plan(self) -> None:
        """Constants of the fused tensor product (non-persistent buffers: model files are unchanged).

        The paths are grouped by input block ``b`` (``mul`` channels of dimension ``d``) and output
        dimension ``d_out``: group ``g`` holds ``P`` paths. Channels are kept last (``[..., mul]``)
        so that every broadcast multiplication runs over contiguous memory. For each group:

        - ``_cg_g [sh_dim, P * d_out * d]``: ``path_weight * w3j(l_in, l_sh, l_out)`` of its paths,
          times ``1 / sqrt(avg_num_neighbors)``: ``edge_sh @ _cg_g`` is the per-edge ``[P * d_out, d]`` map;
        - its radial weights are ``P * mul`` consecutive outputs of the radial MLP, ordered ``(p, u)``
          (``_weight_perm`` reorders the columns of the MLP's last layer to that order);
        - its node output is ``[N, P, d_out, mul]``.

        ``_perm [irreps_mid.dim]`` says where each ``irreps_mid`` entry (e3nn's ``[mul, d_out]``
        layout per path) sits in the concatenation of the groups' node outputs.
        """
        tp, sh = self.tensor_product, self.irreps_sh
        instructions = list(tp.instructions)
        weight_offsets, offset = [], 0
        for ins in instructions:
            weight_offsets.append(offset)
            offset += math.prod(ins.path_shape) if ins.has_weight else 0
        sh_slices, in_slices, mid_slices = sh.slices(), self.irreps_in.slices(), self.irreps_mid.slices()
        norm = 1.0 / math.sqrt(self.avg_num_neighbors)
        perm = torch.zeros(self.irreps_mid.dim, dtype=torch.long)
        weight_perm: list[torch.Tensor] = []
        self._groups: list[tuple[int, int, int, int, int, int]] = []  # (start, stop, mul, d_in, P, d_out)
        column_start = 0
        dtype = torch.get_default_dtype()
        for i_in, (mul, ir_in) in enumerate(self.irreps_in):
            paths = [k for k, ins in enumerate(instructions) if ins.i_in1 == i_in and 0 not in ins.path_shape]
            if mul == 0:
                continue
            for d_out in sorted({self.irreps_mid[instructions[k].i_out].ir.dim for k in paths}):
                group = [k for k in paths if self.irreps_mid[instructions[k].i_out].ir.dim == d_out]
                num_paths = len(group)
                cg = torch.zeros(sh.dim, num_paths, d_out, ir_in.dim, dtype=torch.float64)
                u = torch.arange(mul)[:, None]
                cols = torch.arange(d_out)[None, :]
                for p, k in enumerate(group):
                    ins = instructions[k]
                    l_sh, l_out = sh[ins.i_in2].ir.l, self.irreps_mid[ins.i_out].ir.l
                    w3j = o3.wigner_3j(ir_in.l, l_sh, l_out, dtype=torch.float64)  # [d_in, d_sh, d_out]
                    cg[sh_slices[ins.i_in2], p, :, :] = norm * ins.path_weight * w3j.permute(1, 2, 0)
                    position = column_start + (p * d_out + cols) * mul + u  # in the [P, d_out, mul] layout
                    perm[mid_slices[ins.i_out].start + u * d_out + cols] = position
                # radial weight (p, u) is column weight_offsets[group[p]] + u of the reference layout
                weight_perm.append(torch.tensor([weight_offsets[k] for k in group])[:, None] + torch.arange(mul))
                index = len(self._groups)
                self.register_buffer(f"_cg_{index}", cg.reshape(sh.dim, -1).to(dtype), persistent=False)
                self._groups.append((in_slices[i_in].start, in_slices[i_in].stop, mul, ir_in.dim, num_paths, d_out))
                column_start += mul * num_paths * d_out
        self.register_buffer("_perm", perm, persistent=False)
        order = torch.cat([w.reshape(-1) for w in weight_perm]) if weight_perm else torch.zeros(0, dtype=torch.long)
        self.register_buffer("_weight_perm", order, persistent=False)

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
        if not self.fused:
            weights = self.radial_mlp(edge_radial)
            aggregated = self.propagate(edge_index, x=self.linear_in(x), edge_sh=edge_sh, weights=weights)
            return self.linear_out(aggregated / math.sqrt(self.avg_num_neighbors))
        weights = self._radial_weights(edge_radial)
        return self.linear_out(self._fused_aggregate(self.linear_in(x), edge_index, edge_sh, weights))

    def _radial_weights(self, edge_radial: torch.Tensor) -> torch.Tensor:
        """``self.radial_mlp(edge_radial)[:, self._weight_perm]``, with the column order folded into its last layer.

        Same arithmetic as e3nn's ``FullyConnectedNet`` (``x @ W / sqrt(fan_in)`` and a second-moment
        normalised SiLU) with its scalar factors folded into the weight matrices.
        """
        layers = list(self.radial_mlp)
        h = edge_radial
        scale = 1.0
        for layer in layers[:-1]:
            h = torch.nn.functional.silu(h @ (layer.weight * (scale / math.sqrt(layer.h_in * layer.var_in))))
            # normalize2mom(silu)(z) = factor * silu(z); the factor and var_out go into the next layer
            scale = (1.0 if layer.act._is_id else layer.act.cst) * layer.var_out**0.5
        last = layers[-1]
        weight = last.weight.index_select(1, self._weight_perm)
        return h @ (weight * (scale / math.sqrt(last.h_in * last.var_in / last.var_out)))

    def _fused_aggregate(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_sh: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """``sum_{j -> i} tensor_product(x_j, edge_sh, w) / sqrt(avg_num_neighbors)`` as ``[N, irreps_mid.dim]``.

        ``weights [E, weight_numel]`` are the radial weights in the grouped order of :meth:`_radial_weights`.
        """
        source, target = edge_index[0], edge_index[1]
        num_nodes, num_edges = x.shape[0], edge_sh.shape[0]
        if not self._groups:
            return x.new_zeros(num_nodes, self.irreps_mid.dim)
        group_weights = weights.split([mul * num_paths for _, _, mul, _, num_paths, _ in self._groups], dim=1)
        outputs = []
        gathered: dict[int, torch.Tensor] = {}
        for index, (start, stop, mul, dim_in, num_paths, d_out) in enumerate(self._groups):
            if start not in gathered:  # source features, channels last: [E, d_in, mul]
                x_block = x[:, start:stop].reshape(num_nodes, mul, dim_in).transpose(1, 2).reshape(num_nodes, -1)
                gathered[start] = x_block.index_select(0, source).reshape(num_edges, dim_in, mul)
            x_j = gathered[start]
            cg = getattr(self, f"_cg_{index}").to(edge_sh.dtype)
            path_map = edge_sh @ cg  # [E, P * d_out * d_in]
            w = group_weights[index].reshape(num_edges, num_paths, 1, mul)
            if dim_in == 1:
                message = path_map.reshape(num_edges, num_paths, d_out, 1) * (x_j.reshape(num_edges, 1, 1, mul) * w)
            else:
                product = torch.bmm(path_map.reshape(num_edges, num_paths * d_out, dim_in), x_j)  # [E, P * d_out, mul]
                message = product.reshape(num_edges, num_paths, d_out, mul) * w
            size = num_paths * d_out * mul
            outputs.append(x.new_zeros(num_nodes, size).index_add_(0, target, message.reshape(num_edges, size)))
        return torch.cat(outputs, dim=1).index_select(1, self._perm)

    def message(self, x_j: torch.Tensor, edge_sh: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Per edge: ``x_j [E, irreps_in.dim] (x) edge_sh [E, irreps_sh.dim] -> [E, irreps_mid.dim]``."""
        return self.tensor_product(x_j, edge_sh, weights)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out}, sh={self.irreps_sh})"
