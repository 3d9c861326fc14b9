"""The tensor product of :class:`~molequi.nn.EquivariantConv` regrouped per input irrep block, channels last.

:class:`BlockLayout` is built once per layer from e3nn's ``TensorProduct`` instructions; its
PyTorch path (:meth:`BlockLayout.torch_aggregate`) and the C++ kernel path
(:func:`molequi.nn.conv.autograd.kernel_aggregate`, driven by a :class:`FusedPlan`) compute the
same numbers as the reference, up to floating-point rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from e3nn import o3


@dataclass(frozen=True)
class Block:
    """One input irrep block: ``mul`` channels of dimension ``dim_in`` in columns ``start:stop`` of ``x``.

    ``groups``: ``(P_g, d_out_g)`` of the block's paths grouped by output dimension, in order.
    """

    start: int
    stop: int
    mul: int
    dim_in: int
    groups: tuple[tuple[int, int], ...]

    @property
    def num_paths(self) -> int:
        """``P``: the block's paths."""
        return sum(p for p, _ in self.groups)

    @property
    def weight_size(self) -> int:
        """Radial weights of the block: ``P * mul`` columns, ordered ``(p, u)``."""
        return self.num_paths * self.mul


@dataclass(frozen=True)
class FusedPlan:
    """What the kernel path's autograd functions need for one pass (see :mod:`molequi.nn.conv.autograd`).

    Attributes:
        cgs: per block, Clebsch-Gordan maps ``[sh_dim, Q, d_in]`` in the edge dtype.
        paths: per block, ``[Q]`` int64 path of every output row.
        sizes: per block, radial-weight columns ``P * mul``.
        chunk: edges per chunk.
        targets_sorted: ``edge_index[1]`` is non-decreasing (threads then share the output).
        cache: keep the radial MLP's activations for the backward pass instead of recomputing them.
        workspace_parts: per-thread output copies a kernel call may use (0: one thread).
    """

    cgs: tuple[torch.Tensor, ...]
    paths: tuple[torch.Tensor, ...]
    sizes: tuple[int, ...]
    chunk: int
    targets_sorted: bool
    cache: bool
    workspace_parts: int

    @property
    def offsets(self) -> tuple[int, ...]:
        """First radial-weight column of every block."""
        return tuple(sum(self.sizes[:k]) for k in range(len(self.sizes)))

    def workspace(self, like: torch.Tensor, rows: int, sorted_rows: bool = False) -> torch.Tensor:
        """Zeroed per-thread copies ``[W, N, rows, mul]`` of a block's output shaped like ``like [N, *, mul]``.

        ``W = 0`` where rows are sorted by the scattering index (threads then share the output).
        """
        parts = 0 if sorted_rows else self.workspace_parts
        return like.new_zeros(parts, like.shape[0], rows, like.shape[2])


class BlockLayout(torch.nn.Module):
    """Constants of the fused tensor product (non-persistent buffers: model files are unchanged).

    Paths are grouped by input irrep block ``b`` (``mul`` channels of dimension ``d``) and, within a
    block, by output dimension ``d_out`` (``P_g`` paths per group). Channels are kept last
    (``[..., mul]``) so that every per-channel operation runs over contiguous memory. Per block:

    - ``cg_b [sh_dim, Q, d]``: rows ``q = (group, p, k)`` hold ``path_weight * w3j(l_in, l_sh, l_out)``
      of path ``p`` and output component ``k``, times ``1 / sqrt(avg_num_neighbors)``, so that
      ``edge_sh @ cg_b`` is the per-edge ``[Q, d]`` map of the block's paths;
    - ``path_b [Q]``: the block-local path of every row;
    - its radial weights are ``P * mul`` consecutive outputs of the radial MLP, ordered ``(p, u)``
      (``weight_perm`` reorders the columns of the MLP's last layer to that order);
    - its node output is ``[N, Q, mul]``.

    The aggregations return the concatenation of the blocks' flattened node outputs (the "block
    layout", ``[N, irreps_mid.dim]``); entry ``i`` of ``irreps_mid`` starts at column
    ``mid_columns[i]`` there, component ``k`` and channel ``u`` at ``+ k * mul + u`` (e3nn's
    ``irreps_mid`` layout is ``[mul, d_out]`` per entry: :class:`~molequi.nn.conv.linear_out.BlockLinear`
    reads the block layout directly).

    Args:
        tensor_product: the layer's e3nn ``TensorProduct`` (``uvu`` instructions, external weights).
        avg_num_neighbors: the aggregation normaliser folded into the maps.
    """

    def __init__(self, tensor_product: o3.TensorProduct, avg_num_neighbors: float) -> None:
        super().__init__()
        tp = tensor_product
        irreps_in, sh, irreps_mid = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
        self.irreps_mid = irreps_mid
        instructions = list(tp.instructions)
        weight_offsets, offset = [], 0
        for ins in instructions:
            weight_offsets.append(offset)
            offset += math.prod(ins.path_shape) if ins.has_weight else 0
        sh_slices, in_slices = sh.slices(), irreps_in.slices()
        norm = 1.0 / math.sqrt(avg_num_neighbors)
        weight_perm: list[torch.Tensor] = []
        self.blocks: list[Block] = []
        self.mid_columns: dict[int, int] = {}
        column_start = 0
        dtype = torch.get_default_dtype()
        for i_in, (mul, ir_in) in enumerate(irreps_in):
            paths = [k for k, ins in enumerate(instructions) if ins.i_in1 == i_in and 0 not in ins.path_shape]
            if mul == 0 or not paths:
                continue
            dims = {k: irreps_mid[instructions[k].i_out].ir.dim for k in paths}
            ordered = sorted(paths, key=lambda k: (dims[k], paths.index(k)))  # grouped by d_out
            rows = sum(dims.values())
            cg = torch.zeros(sh.dim, rows, ir_in.dim, dtype=torch.float64)
            path_index = torch.zeros(rows, dtype=torch.long)
            row = 0
            for p, k in enumerate(ordered):
                ins, d_out = instructions[k], dims[k]
                l_sh, l_out = sh[ins.i_in2].ir.l, irreps_mid[ins.i_out].ir.l
                w3j = o3.wigner_3j(ir_in.l, l_sh, l_out, dtype=torch.float64)  # [d_in, d_sh, d_out]
                cg[sh_slices[ins.i_in2], row : row + d_out, :] = norm * ins.path_weight * w3j.permute(1, 2, 0)
                path_index[row : row + d_out] = p
                self.mid_columns[ins.i_out] = column_start + row * mul
                row += d_out
            # radial weight (p, u) of the block is column weight_offsets[ordered[p]] + u of the reference layout
            weight_perm.append(torch.tensor([weight_offsets[k] for k in ordered])[:, None] + torch.arange(mul))
            counts: dict[int, int] = {}
            for k in ordered:
                counts[dims[k]] = counts.get(dims[k], 0) + 1
            index = len(self.blocks)
            self.register_buffer(f"cg_{index}", cg.to(dtype), persistent=False)
            self.register_buffer(f"path_{index}", path_index, persistent=False)
            groups = tuple((count, d_out) for d_out, count in counts.items())
            self.blocks.append(Block(in_slices[i_in].start, in_slices[i_in].stop, mul, ir_in.dim, groups))
            column_start += rows * mul
        order = torch.cat([w.reshape(-1) for w in weight_perm]) if weight_perm else torch.zeros(0, dtype=torch.long)
        self.register_buffer("weight_perm", order, persistent=False)

    @property
    def weight_sizes(self) -> list[int]:
        """Radial-weight columns of every block."""
        return [block.weight_size for block in self.blocks]

    @property
    def max_mul(self) -> int:
        """The largest channel count of a block (0 without blocks)."""
        return max((block.mul for block in self.blocks), default=0)

    def paths(self) -> list[torch.Tensor]:
        """Per block, ``[Q]`` int64 path of every output row."""
        return [getattr(self, f"path_{index}") for index in range(len(self.blocks))]

    def split(self, x: torch.Tensor, dtype: torch.dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per block: source features channels last ``[N, d_in, mul]`` and Clebsch-Gordan maps ``[sh_dim, Q, d_in]``."""
        x_blocks, cgs = [], []
        for index, block in enumerate(self.blocks):
            columns = x[:, block.start : block.stop].reshape(x.shape[0], block.mul, block.dim_in)
            x_blocks.append(columns.transpose(1, 2).contiguous())
            cgs.append(getattr(self, f"cg_{index}").to(dtype))
        return x_blocks, cgs

    @staticmethod
    def concat(outputs: list[torch.Tensor]) -> torch.Tensor:
        """The blocks' node outputs ``[N, Q_b, mul_b]`` side by side: ``[N, irreps_mid.dim]`` in the block layout."""
        num_nodes = outputs[0].shape[0]
        return torch.cat([out.reshape(num_nodes, -1) for out in outputs], dim=1)

    def torch_aggregate(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_sh: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """``sum_{j -> i} tensor_product(x_j, edge_sh, w) / sqrt(avg_num_neighbors)`` with PyTorch operations.

        Returns ``[N, irreps_mid.dim]`` in the block layout; differentiable to any order.
        ``x [N, irreps_in.dim]``, ``edge_sh [E, sh_dim]``; ``weights [E, weight_numel]`` are the
        radial weights in block order (columns ``weight_perm`` of the reference layout).
        """
        source, target = edge_index[0], edge_index[1]
        num_nodes, num_edges = x.shape[0], edge_sh.shape[0]
        if not self.blocks:
            return x.new_zeros(num_nodes, self.irreps_mid.dim)
        x_blocks, cgs = self.split(x, edge_sh.dtype)
        outputs = []
        for x_block, w, cg, block in zip(x_blocks, weights.split(self.weight_sizes, dim=1), cgs, self.blocks):
            w = w.reshape(num_edges, block.num_paths, block.mul)  # [E, P, mul]
            outputs.append(_block_messages(x_block, edge_sh, w, cg, source, target, block.groups))
        return self.concat(outputs)


def _block_messages(
    x_block: torch.Tensor,
    edge_sh: torch.Tensor,
    weights: torch.Tensor,
    cg: torch.Tensor,
    source: torch.Tensor,
    target: torch.Tensor,
    groups: tuple[tuple[int, int], ...],
) -> torch.Tensor:
    """The PyTorch path for one input block: ``[N, d_in, mul] -> [N, Q, mul]``.

    ``weights [E, P, mul]``, ``cg [sh_dim, Q, d_in]``; ``groups``: ``(P_g, d_out_g)`` of the block's
    groups of paths with equal output dimension, in order (``Q = sum_g P_g * d_out_g``).
    """
    num_nodes, dim_in, mul = x_block.shape
    num_edges = edge_sh.shape[0]
    x_j = x_block.reshape(num_nodes, dim_in * mul).index_select(0, source).reshape(num_edges, dim_in, mul)
    outputs, row, path = [], 0, 0
    for num_paths, d_out in groups:
        rows = num_paths * d_out
        path_map = edge_sh @ cg[:, row : row + rows].reshape(cg.shape[0], rows * dim_in)  # [E, P * d_out * d_in]
        w = weights[:, path : path + num_paths].reshape(num_edges, num_paths, 1, mul)
        if dim_in == 1:
            message = path_map.reshape(num_edges, num_paths, d_out, 1) * (x_j.reshape(num_edges, 1, 1, mul) * w)
        else:
            product = torch.bmm(path_map.reshape(num_edges, rows, dim_in), x_j)  # [E, P * d_out, mul]
            message = product.reshape(num_edges, num_paths, d_out, mul) * w
        summed = x_block.new_zeros(num_nodes, rows * mul).index_add_(0, target, message.reshape(num_edges, rows * mul))
        outputs.append(summed)
        row, path = row + rows, path + num_paths
    return torch.cat(outputs, dim=1).reshape(num_nodes, row, mul)
