"""``linear_out`` of :class:`~molequi.nn.EquivariantConv` applied straight to the blocks' channels-last outputs.

The ``"torch"`` and ``"cpp"`` backends aggregate per input block (:class:`~molequi.nn.conv.plan.BlockLayout`:
``[N, Q, mul]``, components before channels). Instead of reordering those columns to e3nn's
``irreps_mid`` layout (``[mul, d]`` per entry) and running e3nn's ``o3.Linear`` (which slices them
again, per entry), :class:`BlockLinear` gathers them once into one ``[N, d, sum mul]`` array per
irrep type and multiplies by that type's weight matrix: the same map, fewer copies, and no
slice-backward fills. Gathers and their backward are index selects (:func:`permute_columns`).
"""

from __future__ import annotations

import torch
from e3nn import o3

from .plan import BlockLayout


class _ColumnPermutation(torch.autograd.Function):
    """``x[:, perm]`` whose backward gathers with the inverse permutation (no scatter, as ``index_select``'s has)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, perm: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(perm, inverse)
        return x.index_select(1, perm)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        perm, inverse = ctx.saved_tensors
        return _ColumnPermutation.apply(grad, inverse, perm), None, None


def permute_columns(x: torch.Tensor, perm: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """``x [N, C] -> x[:, perm]`` for a permutation ``perm`` of ``0..C-1`` with ``inverse = argsort(perm)``."""
    return _ColumnPermutation.apply(x, perm, inverse)


class BlockLinear(torch.nn.Module):
    """An e3nn ``o3.Linear`` on ``irreps_mid``, applied to a :class:`BlockLayout`'s outputs (constants only).

    ``o3.Linear`` maps channels within each irrep type: for type ``t`` of dimension ``d``,
    ``y[n, k, :] = x_t[n, k, :] @ W_t`` with ``x_t`` the channels of every ``irreps_mid`` entry of
    type ``t`` side by side and ``W_t`` its instructions' weight blocks times their path weights.
    ``type_perm`` gathers the blocks' columns into the types' ``[d, sum mul]`` layouts.

    Args:
        layout: the convolution's block layout.
        linear: its ``linear_out`` (read at construction for its structure; passed again to
            :meth:`forward` for its current weights, so that it is not registered twice).

    Raises:
        ValueError: ``linear`` has biases, or inputs that the blocks do not produce.
    """

    def __init__(self, layout: BlockLayout, linear: o3.Linear) -> None:
        super().__init__()
        irreps_mid, irreps_out = linear.irreps_in, linear.irreps_out
        #: per irrep type: (dimension, [(irreps_mid entry, mul)], [(irreps_out entry, mul)])
        self.types: list[tuple[int, list[tuple[int, int]], list[tuple[int, int]]]] = []
        columns: list[torch.Tensor] = []
        for ir in dict.fromkeys(ir for mul, ir in irreps_out if mul > 0):
            mids = [(i, mul) for i, (mul, ir_mid) in enumerate(irreps_mid) if ir_mid == ir and mul > 0]
            outs = [(j, mul) for j, (mul, ir_out) in enumerate(irreps_out) if ir_out == ir and mul > 0]
            for k in range(ir.dim):
                for i, mul in mids:
                    if i in layout.mid_columns:
                        columns.append(layout.mid_columns[i] + k * mul + torch.arange(mul))
            self.types.append((ir.dim, mids, outs))
        order = torch.cat(columns) if columns else torch.zeros(0, dtype=torch.long)
        covered = order.numel() == irreps_mid.dim and torch.equal(torch.sort(order).values, torch.arange(order.numel()))
        if not covered or any(ins.i_in == -1 for ins in linear.instructions):
            raise ValueError(f"BlockLinear: needs a bias-free o3.Linear on the blocks' irreps_mid; got {linear}")
        self.register_buffer("type_perm", order, persistent=False)
        self.register_buffer("type_perm_inverse", torch.argsort(order), persistent=False)

    def forward(self, aggregated: torch.Tensor, linear: o3.Linear) -> torch.Tensor:
        """``aggregated [N, irreps_mid.dim]`` in the blocks' layout -> ``linear(...)`` as ``[N, irreps_out.dim]``."""
        by_type = permute_columns(aggregated, self.type_perm, self.type_perm_inverse)
        num_nodes = aggregated.shape[0]
        views = {(ins.i_in, ins.i_out): (ins.path_weight, k) for k, ins in enumerate(linear.instructions)}
        sizes = [dim * sum(mul for _, mul in mids) for dim, mids, _ in self.types]
        outputs: dict[int, torch.Tensor] = {}
        for (dim, mids, outs), x in zip(self.types, by_type.split(sizes, dim=1)):
            rows = []
            for i, mul_in in mids:
                blocks = []
                for j, mul_out in outs:
                    if (i, j) in views:
                        path_weight, k = views[(i, j)]
                        blocks.append(path_weight * linear.weight_view_for_instruction(k))
                    else:
                        blocks.append(x.new_zeros(mul_in, mul_out))
                rows.append(torch.cat(blocks, dim=1))
            weight = torch.cat(rows, dim=0)  # [sum mul_in, sum mul_out]
            y = x.reshape(num_nodes, dim, -1) @ weight  # [N, d, sum mul_out]
            for (j, mul_out), part in zip(outs, y.split([mul for _, mul in outs], dim=2)):
                outputs[j] = part.transpose(1, 2).reshape(num_nodes, mul_out * dim)  # e3nn layout [mul, d]
        parts = [outputs.get(j, aggregated.new_zeros(num_nodes, e.dim)) for j, e in enumerate(linear.irreps_out)]
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
