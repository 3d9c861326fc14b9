"""The C++ kernel path of :class:`~molequi.nn.EquivariantConv` as autograd functions, over chunks of edges.

:func:`kernel_aggregate` runs the radial MLP and every block's tensor product chunk by chunk
(:class:`_ChunkedEdges`), never storing per-edge messages: memory is ``O(N + chunk)`` beyond the
inputs. First derivatives come from the kernel's hand-written backward, second derivatives (a
force loss in training) from its double backward (:class:`_ChunkedEdgesGradient`); third
derivatives are not supported. Values and derivatives equal the PyTorch path's up to rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd import forward_ad

from ..radial import apply_mlp
from .kernel import fused_kernel
from .plan import BlockLayout, FusedPlan


def kernel_aggregate(
    layout: BlockLayout,
    x: torch.Tensor,
    edge_index: torch.Tensor,
    edge_sh: torch.Tensor,
    edge_radial: torch.Tensor,
    matrices: tuple[torch.Tensor, ...],
    edge_chunk: int,
    cache_bytes: int,
) -> torch.Tensor:
    """As :meth:`BlockLayout.torch_aggregate`, radial MLP included, with the C++ kernel.

    Returns ``[N, irreps_mid.dim]`` in the block layout.

    ``x [N, irreps_in.dim]`` (CPU), ``edge_index [2, E]``, ``edge_sh [E, sh_dim]``, ``edge_radial
    [E, num_radial]``; ``matrices``: the radial MLP's folded matrices, outputs in block order.
    The radial MLP's activations are kept for the backward pass when they take at most
    ``cache_bytes``.

    Raises:
        ValueError: an ``edge_index`` entry outside ``[0, N)`` (checked once, before the kernel runs).
    """
    num_nodes, num_edges = x.shape[0], edge_sh.shape[0]
    if not layout.blocks:
        return x.new_zeros(num_nodes, layout.irreps_mid.dim)
    if num_edges:
        low, high = (int(v) for v in torch.aminmax(edge_index))
        if low < 0 or high >= num_nodes:
            bad = low if low < 0 else high
            raise ValueError(
                f"EquivariantConv: edge_index holds node {bad}, but x has {num_nodes} nodes (0..{num_nodes - 1})"
            )
    target = edge_index[1]
    targets_sorted = bool((target[1:] >= target[:-1]).all()) if num_edges > 1 else True
    x_blocks, cgs = layout.split(x, edge_sh.dtype)
    # keep the radial MLP's per-edge activations (no recomputation) while they fit the budget
    widths = sum(m.shape[1] for m in matrices[:-1]) * 2 + matrices[0].shape[0] + matrices[-1].shape[1]
    chunk = max(int(edge_chunk), 1)
    plan = FusedPlan(
        cgs=tuple(cgs),
        paths=tuple(layout.paths()),
        sizes=tuple(layout.weight_sizes),
        chunk=chunk,
        targets_sorted=targets_sorted,
        cache=num_edges * widths * edge_sh.element_size() <= cache_bytes,
        workspace_parts=fused_kernel().parallel_parts(min(chunk, num_edges)) - 1 if num_edges else 0,
    )
    edge_index = edge_index.contiguous()
    outputs = _ChunkedEdges.apply(edge_radial, edge_sh, edge_index, plan, len(x_blocks), *x_blocks, *matrices)
    return layout.concat(list(outputs))


def _needed(needs_input_grad: tuple[bool, ...], inputs: tuple[Any, ...]) -> tuple[bool, ...]:
    """``needs_input_grad`` narrowed to the inputs whose gradient this backward pass will use.

    ``ctx.needs_input_grad`` only says which inputs require grad: computing forces with
    ``autograd.grad(energy, pos)`` would still get the radial MLP's parameter gradients computed and
    thrown away. Where torch can tell (its private ``_will_engine_execute_node``), gradients that
    lead nowhere the engine goes are skipped.
    """
    will_execute = getattr(torch._C, "_will_engine_execute_node", None)
    if will_execute is None:
        return needs_input_grad
    narrowed = []
    for need, tensor in zip(needs_input_grad, inputs):
        if need and isinstance(tensor, torch.Tensor) and tensor.grad_fn is not None:
            try:
                need = bool(will_execute(tensor.grad_fn))
            except RuntimeError:  # not inside a backward pass of the engine
                pass
        narrowed.append(need)
    return tuple(narrowed)


def _add_workspace(total: torch.Tensor, workspace: torch.Tensor) -> None:
    """``total += sum of the per-thread copies`` (nothing to do without copies)."""
    if workspace.shape[0]:
        total += workspace.sum(0)


class _RadialWeights:
    """The radial weights of every chunk of edges, kept with their autograd graphs or recomputed on demand.

    Keeping them (``cache=True``) saves one pass of the radial MLP per derivative and costs
    ``O(E * width)`` memory; recomputing keeps the memory ``O(chunk)``. Both give the same numbers.
    """

    def __init__(self, edge_radial: torch.Tensor, matrices: tuple[torch.Tensor, ...], cache: bool):
        self.edge_radial = edge_radial.detach()
        self.matrices = tuple(m.detach() for m in matrices)
        self.cached: dict[int, tuple[list[torch.Tensor], torch.Tensor]] = {}
        self.cache = cache

    def no_grad(self, start: int, stop: int) -> torch.Tensor:
        """``[stop - start, weight_numel]`` without a graph (forward pass); fills the cache when caching."""
        if self.cache:
            return self.with_graph(start, stop)[1].detach()
        return apply_mlp(self.edge_radial[start:stop], self.matrices)

    def with_graph(self, start: int, stop: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(leaves, weights)``: ``leaves = [edge_radial chunk, *matrices]`` (all requiring grad) and the weights."""
        if start in self.cached:
            return self.cached[start]
        with torch.enable_grad():
            leaves = [self.edge_radial[start:stop].detach().requires_grad_(True)]
            leaves += [m.detach().requires_grad_(True) for m in self.matrices]
            result = (leaves, apply_mlp(leaves[0], tuple(leaves[1:])))
        if self.cache:
            self.cached[start] = result
        return result


def _kernel_gradients(plan: FusedPlan, radial_weights, edge_sh, edge_index, x_blocks, grads, needs):
    """First derivatives of the kernel path, chunk by chunk.

    ``radial_weights``: a :class:`_RadialWeights`; ``needs``: flags for ``(edge_radial, edge_sh,
    *x_blocks, *matrices)``; returns the gradients in that order, ``None`` where not needed.
    """
    kernel = fused_kernel()
    source, target = edge_index[0], edge_index[1]
    num_blocks = len(x_blocks)
    need_radial, need_sh, need_x, need_matrices = needs[0], needs[1], needs[2 : 2 + num_blocks], needs[2 + num_blocks :]
    grads = [g.contiguous() for g in grads]
    grad_x = [torch.zeros_like(x) for x in x_blocks]
    workspaces = [plan.workspace(x, x.shape[1]) for x in x_blocks]  # grad_x is scattered by source
    grad_sh = torch.zeros_like(edge_sh)
    grad_radial = torch.zeros_like(radial_weights.edge_radial) if need_radial else None
    grad_matrices = [torch.zeros_like(m) if need else None for m, need in zip(radial_weights.matrices, need_matrices)]
    grad_weights = None
    for start in range(0, edge_sh.shape[0], plan.chunk):
        stop = min(start + plan.chunk, edge_sh.shape[0])
        sh, src, tgt = edge_sh[start:stop], source[start:stop], target[start:stop]
        leaves, weights = radial_weights.with_graph(start, stop)
        if grad_weights is None or grad_weights.shape[0] != stop - start:
            grad_weights = torch.zeros_like(weights)  # one buffer for every full chunk
        else:
            grad_weights.zero_()
        blocks = zip(grads, grad_x, workspaces, x_blocks, plan.cgs, plan.paths, plan.offsets, plan.sizes)
        for g, gx, ws, x, cg, path, offset, size in blocks:
            kernel.fused_tp_backward(
                gx, ws, grad_sh[start:stop], grad_weights, g, x, sh, cg, weights.detach(), offset, size // x.shape[2],
                path, src, tgt,
            )
        wanted = [need_radial, *need_matrices]
        inputs = [t for t, need in zip(leaves, wanted) if need]
        if inputs:
            found = iter(torch.autograd.grad(weights, inputs, grad_weights, retain_graph=radial_weights.cache))
            if need_radial:
                grad_radial[start:stop] = next(found)
            for k, need in enumerate(need_matrices):
                if need:
                    grad_matrices[k] += next(found)
    for gx, ws in zip(grad_x, workspaces):
        _add_workspace(gx, ws)
    result = [grad_radial, grad_sh if need_sh else None]
    return result + [gx if need else None for gx, need in zip(grad_x, need_x)] + grad_matrices


class _ChunkedEdges(torch.autograd.Function):
    """Radial MLP and every block's tensor product, over chunks of edges, without storing per-edge data.

    Forward: for each chunk of ``plan.chunk`` edges, the radial weights, then the kernel accumulates
    each block's messages into its node output ``[N, Q, mul]``. Backward: recomputes (or reuses)
    each chunk's radial weights with autograd, for the MLP's part, runs the kernel's backward, and
    pulls the radial-weight gradient back through the MLP; a chunk's intermediates stay in cache.
    The first derivatives are the same numbers whether or not ``create_graph=True``; second
    derivatives come from :class:`_ChunkedEdgesGradient`.

    Inputs: ``edge_radial [E, num_radial]``, ``edge_sh [E, sh_dim]``, ``edge_index [2, E]``, the
    :class:`FusedPlan`, the number of blocks, then the blocks' ``x_block [N, d_in, mul]`` and the
    radial MLP's matrices. Outputs: the blocks' ``[N, Q, mul]``.
    """

    @staticmethod
    def forward(ctx, edge_radial, edge_sh, edge_index, plan: FusedPlan, num_blocks, *tensors):
        kernel = fused_kernel()
        x_blocks, matrices = tensors[:num_blocks], tensors[num_blocks:]
        source, target = edge_index[0], edge_index[1]
        radial_weights = _RadialWeights(edge_radial, matrices, plan.cache)
        outputs = [x.new_zeros(x.shape[0], cg.shape[1], x.shape[2]) for x, cg in zip(x_blocks, plan.cgs)]
        workspaces = [plan.workspace(x, cg.shape[1], plan.targets_sorted) for x, cg in zip(x_blocks, plan.cgs)]
        for start in range(0, edge_sh.shape[0], plan.chunk):
            stop = min(start + plan.chunk, edge_sh.shape[0])
            weights = radial_weights.no_grad(start, stop)  # [chunk, weight_numel]
            sh, src, tgt = edge_sh[start:stop], source[start:stop], target[start:stop]
            blocks = zip(outputs, workspaces, x_blocks, plan.cgs, plan.paths, plan.offsets, plan.sizes)
            for out, ws, x, cg, path, offset, size in blocks:
                num_paths = size // x.shape[2]
                sorted_ = plan.targets_sorted
                kernel.fused_tp_forward(out, ws, x, sh, cg, weights, offset, num_paths, path, src, tgt, sorted_)
        for out, ws in zip(outputs, workspaces):
            _add_workspace(out, ws)
        ctx.save_for_backward(edge_radial, edge_sh, edge_index, *tensors)
        ctx.plan, ctx.num_blocks, ctx.radial_weights = plan, num_blocks, radial_weights
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grads):
        edge_radial, edge_sh, edge_index, *tensors = ctx.saved_tensors
        num_blocks = ctx.num_blocks
        needs = _needed(ctx.needs_input_grad, (edge_radial, edge_sh, None, None, None, *tensors))
        needs = needs[:2] + needs[5:]  # (edge_radial, edge_sh, *x_blocks, *matrices)
        if torch.is_grad_enabled():  # create_graph=True: the same values, differentiable once more
            outs = _ChunkedEdgesGradient.apply(
                ctx.plan, ctx.radial_weights, num_blocks, needs, edge_radial, edge_sh, edge_index, *tensors, *grads
            )
            result = [out if need else None for out, need in zip(outs, needs)]
        else:
            x_blocks = tensors[:num_blocks]
            result = _kernel_gradients(ctx.plan, ctx.radial_weights, edge_sh, edge_index, x_blocks, grads, needs)
        return (result[0], result[1], None, None, None, *result[2:])


class _ChunkedEdgesGradient(torch.autograd.Function):
    """First derivatives of :class:`_ChunkedEdges` (kernel values), differentiable once more.

    Forward: :func:`_kernel_gradients` (zeros where a gradient is not needed). Backward (second
    derivatives, e.g. a force loss in training), chunk by chunk: the kernel's second derivatives of
    the tensor product, the radial weights' tangent along the incoming gradients by forward-mode
    AD, and the radial MLP's own second derivatives by autograd. Third derivatives are not supported.
    """

    @staticmethod
    def forward(ctx, plan, radial_weights, num_blocks, needs, edge_radial, edge_sh, edge_index, *rest):
        num_tensors = len(rest) - num_blocks  # rest: x_blocks, matrices, then one gradient per block
        tensors, grads = rest[:num_tensors], rest[num_tensors:]
        result = _kernel_gradients(plan, radial_weights, edge_sh, edge_index, tensors[:num_blocks], grads, needs)
        inputs = (edge_radial, edge_sh, *tensors)
        ctx.save_for_backward(edge_radial, edge_sh, edge_index, *rest)
        ctx.plan, ctx.num_blocks, ctx.num_tensors = plan, num_blocks, num_tensors
        ctx.radial_weights = radial_weights
        return tuple(g if g is not None else torch.zeros_like(t) for g, t in zip(result, inputs))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grad_grads):
        edge_radial, edge_sh, edge_index, *rest = ctx.saved_tensors
        num_blocks, num_tensors, plan = ctx.num_blocks, ctx.num_tensors, ctx.plan
        tensors, grads = rest[:num_tensors], [g.contiguous() for g in rest[num_tensors:]]
        x_blocks, matrices = tensors[:num_blocks], tuple(t.detach() for t in tensors[num_blocks:])
        gg_radial, gg_sh = grad_grads[0], grad_grads[1].contiguous()
        gg_x = [g.contiguous() for g in grad_grads[2 : 2 + num_blocks]]
        gg_matrices = grad_grads[2 + num_blocks :]
        kernel = fused_kernel()
        radial_weights = ctx.radial_weights
        source, target = edge_index[0], edge_index[1]
        d_grads = [torch.zeros_like(g) for g in grads]
        d_x = [torch.zeros_like(x) for x in x_blocks]
        dg_workspaces = [plan.workspace(g, g.shape[1], plan.targets_sorted) for g in grads]
        dx_workspaces = [plan.workspace(x, x.shape[1]) for x in x_blocks]
        d_sh = torch.zeros_like(edge_sh)
        d_radial = torch.zeros_like(edge_radial)
        d_matrices = [torch.zeros_like(m) for m in matrices]
        # which incoming second-order gradients of the radial MLP's inputs are non-zero (training with a
        # force loss: only the one of edge_radial; the matrices' first derivatives were not asked for)
        active = [bool(gg_radial.any()), *(bool(g.any()) for g in gg_matrices)]
        for start in range(0, edge_sh.shape[0], plan.chunk):
            stop = min(start + plan.chunk, edge_sh.shape[0])
            sh, src, tgt = edge_sh[start:stop], source[start:stop], target[start:stop]
            leaves, weights = radial_weights.with_graph(start, stop)
            incoming = [gg_radial[start:stop], *gg_matrices]
            if any(active):  # the radial weights' tangent along the incoming second-order gradients
                with forward_ad.dual_level():
                    duals = [
                        forward_ad.make_dual(t.detach(), g) if on else t.detach()
                        for t, g, on in zip(leaves, incoming, active)
                    ]
                    dual = apply_mlp(duals[0], tuple(duals[1:]))
                    grad_grad_weights = forward_ad.unpack_dual(dual).tangent.contiguous()
            else:
                grad_grad_weights = torch.zeros_like(weights)
            first_weights = torch.zeros_like(weights)  # first derivative with respect to the weights
            d_weights = torch.zeros_like(weights)
            for k in range(num_blocks):
                x, size = x_blocks[k], plan.sizes[k]
                kernel.fused_tp_double_backward(
                    d_grads[k], dg_workspaces[k], d_x[k], dx_workspaces[k], d_sh[start:stop], d_weights,
                    first_weights, grads[k], x, sh, plan.cgs[k], weights.detach(), plan.offsets[k], size // x.shape[2],
                    plan.paths[k], src, tgt, gg_x[k], gg_sh[start:stop], grad_grad_weights, plan.targets_sorted,
                )
            with torch.enable_grad():
                scalar = (weights * d_weights).sum()
                if any(active):  # second derivatives of the radial MLP itself
                    wrt = [t for t, on in zip(leaves, active) if on]
                    first = torch.autograd.grad(weights, wrt, first_weights, create_graph=True, retain_graph=True)
                    for f, g in zip(first, [g for g, on in zip(incoming, active) if on]):
                        scalar = scalar + (f * g).sum()
                found = torch.autograd.grad(scalar, leaves, allow_unused=True, retain_graph=radial_weights.cache)
            if found[0] is not None:
                d_radial[start:stop] += found[0]
            for k, f in enumerate(found[1:]):
                if f is not None:
                    d_matrices[k] += f
        for total, ws in zip(d_grads + d_x, dg_workspaces + dx_workspaces):
            _add_workspace(total, ws)
        return (None, None, None, None, d_radial, d_sh, None, *d_x, *d_matrices, *d_grads)
