"""Equivariance checks under O(3) (rotations and reflections), translations and permutations.

Everything here is public so users can check their own layers::

    from molequi.testing import assert_equivariant
    assert_equivariant(my_module)                 # irreps_in / irreps_out read off the module
"""

from __future__ import annotations

from typing import Callable

import torch
from e3nn import o3

from ..dtypes import default_dtype

#: Default tolerances on the max absolute error for outputs of order one.
TOLERANCES: dict[torch.dtype, float] = {torch.float64: 1e-10, torch.float32: 1e-4}


def random_o3(num: int, dtype: torch.dtype = torch.float64, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[num, 3, 3]`` random orthogonal matrices: Haar rotations, every odd-numbered one times ``-1``.

    Half of the samples (at least one when ``num >= 2``) include the inversion, so both proper
    rotations and reflections are always exercised.
    """
    quaternions = torch.randn(num, 4, dtype=torch.float64, generator=generator)
    rotations = o3.quaternion_to_matrix(quaternions / quaternions.norm(dim=-1, keepdim=True))
    signs = torch.tensor([1.0 if k % 2 == 0 else -1.0 for k in range(num)], dtype=torch.float64)
    return (rotations * signs[:, None, None]).to(dtype)


def wigner_matrices(irreps: o3.Irreps | str, matrices: torch.Tensor) -> torch.Tensor:
    """``[n, dim, dim]`` representation matrices of ``irreps`` for ``matrices [n, 3, 3]``, in float64.

    Built in one batched call under a float64 default dtype: e3nn creates intermediates in the
    default dtype, and its per-matrix ``matrix_exp`` path is only accurate to ~1e-11 for some
    small angles, which would otherwise dominate float64 equivariance errors.
    """
    with default_dtype(torch.float64):
        return o3.Irreps(irreps).D_from_matrix(matrices.to(torch.float64))


def default_tolerance(dtype: torch.dtype) -> float:
    """The tolerance used when none is given (see :data:`TOLERANCES`)."""
    return TOLERANCES.get(dtype, 1e-4)


def _module_dtype(module: torch.nn.Module) -> torch.dtype:
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def equivariance_error(
    function: Callable[[torch.Tensor], torch.Tensor],
    irreps_in: o3.Irreps | str,
    irreps_out: o3.Irreps | str,
    inputs: torch.Tensor | None = None,
    num_transformations: int = 4,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
) -> float:
    """Max over random O(3) elements ``g`` of ``|f(D_in(g) x) - D_out(g) f(x)|``.

    Args:
        function: maps ``[batch, irreps_in.dim] -> [batch, irreps_out.dim]``.
        inputs: ``[batch, irreps_in.dim]`` (default: 16 unit Gaussian samples).
    """
    irreps_in, irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
    if inputs is None:
        inputs = torch.randn(16, irreps_in.dim, dtype=dtype, generator=generator)
    reference = function(inputs)
    matrices = random_o3(num_transformations, torch.float64, generator)
    worst = 0.0
    for d_in, d_out in zip(wigner_matrices(irreps_in, matrices), wigner_matrices(irreps_out, matrices)):
        error = (function(inputs @ d_in.to(inputs.dtype).T) - reference @ d_out.to(reference.dtype).T).abs().max().item()
        worst = max(worst, error)
    return worst


def assert_equivariant(
    module: torch.nn.Module,
    irreps_in: o3.Irreps | str | None = None,
    irreps_out: o3.Irreps | str | None = None,
    tolerance: float | None = None,
    **kwargs,
) -> float:
    """Assert a features-to-features module commutes with O(3); returns the error.

    ``irreps_in`` / ``irreps_out`` default to the module's attributes; the inputs are drawn in the
    module's dtype and the tolerance defaults to :func:`default_tolerance` of that dtype.
    """
    irreps_in = module.irreps_in if irreps_in is None else irreps_in
    irreps_out = module.irreps_out if irreps_out is None else irreps_out
    dtype = _module_dtype(module)
    error = equivariance_error(module, irreps_in, irreps_out, dtype=dtype, **kwargs)
    tolerance = default_tolerance(dtype) if tolerance is None else tolerance
    assert error <= tolerance, f"{type(module).__name__}: O(3) equivariance error {error:.3e} > {tolerance:.1e}"
    return error


def graph_layer_equivariance_errors(
    layer: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    pos: torch.Tensor,
    edge_index: torch.Tensor,
    irreps_in: o3.Irreps | str,
    irreps_out: o3.Irreps | str,
    num_transformations: int = 4,
    generator: torch.Generator | None = None,
    node_inputs: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Errors of a graph layer ``layer(x, pos, edge_index, **node_inputs) -> [N, irreps_out.dim]``.

    ``node_inputs`` are invariant per-node tensors ``[N, ...]`` (e.g. one-hot species), permuted
    with the nodes and otherwise left alone.

    Returns the max absolute error under:
        - ``"o3"``: random rotations and reflections of ``pos`` and of ``x`` (by ``irreps_in``);
        - ``"translation"``: a random shift of ``pos`` (output must be unchanged);
        - ``"permutation"``: a random relabelling of the nodes and reordering of the edges.
    """
    irreps_in, irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
    node_inputs = node_inputs or {}
    reference = layer(x, pos, edge_index, **node_inputs)
    o3_error = 0.0
    matrices = random_o3(num_transformations, torch.float64, generator)
    for matrix, d_in, d_out in zip(matrices, wigner_matrices(irreps_in, matrices), wigner_matrices(irreps_out, matrices)):
        rotated = layer(x @ d_in.to(x.dtype).T, pos @ matrix.to(pos.dtype).T, edge_index, **node_inputs)
        o3_error = max(o3_error, (rotated - reference @ d_out.to(x.dtype).T).abs().max().item())
    shift = 10 * torch.randn(1, 3, dtype=pos.dtype, generator=generator)
    translation_error = (layer(x, pos + shift, edge_index, **node_inputs) - reference).abs().max().item()
    node_perm = torch.randperm(x.shape[0], generator=generator)
    edge_perm = torch.randperm(edge_index.shape[1], generator=generator)
    inverse = torch.empty_like(node_perm)
    inverse[node_perm] = torch.arange(node_perm.numel())
    permuted_inputs = {name: value[node_perm] for name, value in node_inputs.items()}
    permuted = layer(x[node_perm], pos[node_perm], inverse[edge_index[:, edge_perm]], **permuted_inputs)
    permutation_error = (permuted - reference[node_perm]).abs().max().item()
    return {"o3": o3_error, "translation": translation_error, "permutation": permutation_error}


def assert_graph_layer_equivariant(
    layer: torch.nn.Module,
    x: torch.Tensor,
    pos: torch.Tensor,
    edge_index: torch.Tensor,
    tolerance: float | None = None,
    **kwargs,
) -> dict[str, float]:
    """Assert :func:`graph_layer_equivariance_errors` are within ``tolerance`` (default by dtype)."""
    errors = graph_layer_equivariance_errors(layer, x, pos, edge_index, layer.irreps_in, layer.irreps_out, **kwargs)
    tolerance = default_tolerance(x.dtype) if tolerance is None else tolerance
    failed = {name: error for name, error in errors.items() if error > tolerance}
    assert not failed, f"{type(layer).__name__}: equivariance errors {failed} > {tolerance:.1e}"
    return errors
