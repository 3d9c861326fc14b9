"""One graph of aten operations for energy, forces and stress: the tensor-only model view that is traced.

:class:`ForceField` wraps an :class:`~molequi.models.AtomisticModel` (a frozen copy in eval mode,
convolutions on their ``"torch"`` backend: the C++ kernel cannot be traced) as a module of plain
tensors. :func:`trace` records it with ``make_fx`` in symbolic mode: the force (and stress)
derivatives by ``torch.autograd.grad`` are unfolded into the same graph, the atom and edge
counts stay symbols, and any read of a tensor value on the host (``.item()``, ``bool(t)``, a
data-dependent shape) is an error. ``torch.compile`` (:mod:`molequi.deploy.compiled`) and
``torch.export`` (:mod:`molequi.deploy.export`) both start from that graph.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch.fx.experimental import _config as fx_config
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

from ..data import keys
from ..models import AtomisticModel, GraphInputs
from ..nn.conv import EquivariantConv

#: The inputs of :class:`ForceField`, in order: ``pos [N, 3]``, ``z [N]``, ``edge_index [2, E]``,
#: ``edge_shift [E, 3]``, ``cell [G, 3, 3]``, ``batch [N]``.
INPUT_NAMES = (keys.POSITIONS, keys.ATOMIC_NUMBERS, keys.EDGE_INDEX, keys.EDGE_SHIFT, keys.CELL, keys.BATCH)


def output_names(stress: bool) -> tuple[str, ...]:
    """The outputs of :class:`ForceField`, in order: ``energy [G]``, ``forces [N, 3]`` (and ``stress [G, 3, 3]``)."""
    return (keys.ENERGY, keys.FORCES, keys.STRESS) if stress else (keys.ENERGY, keys.FORCES)


def torch_backend_copy(model: AtomisticModel) -> AtomisticModel:
    """A copy of ``model`` whose convolutions use the fused PyTorch backend (the C++ kernel cannot be traced)."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, EquivariantConv):
            module.backend = "torch"
    return model


def traceable_copy(model: AtomisticModel) -> AtomisticModel:
    """A frozen eval-mode :func:`torch_backend_copy` of ``model``."""
    model = torch_backend_copy(model).eval()
    model.requires_grad_(False)
    return model


class ForceField(torch.nn.Module):
    """``(pos, z, edge_index, edge_shift, cell, batch) -> (energy, forces[, stress])`` of a model, tensors only.

    Args:
        model: the potential.
        stress: also return the stress (every graph then needs a cell of non-zero volume).
        copy: wrap a :func:`traceable_copy` of ``model`` (default; the caller's module is
            untouched) or ``model`` itself (already such a copy, e.g. shared by two wrappers).

    Shapes:
        inputs as :data:`INPUT_NAMES`; outputs ``energy [G]`` (float64), ``forces [N, 3]`` and
        ``stress [G, 3, 3]`` in the model's dtype, detached (eV, eV/Å, eV/Å^3).
    """

    def __init__(self, model: AtomisticModel, stress: bool = False, copy: bool = True) -> None:
        super().__init__()
        self.model = traceable_copy(model) if copy else model
        self.stress = bool(stress)
        self.r_max = float(model.r_max)
        self.dtype = next(self.model.parameters()).dtype

    def forward(
        self,
        pos: torch.Tensor,
        z: torch.Tensor,
        edge_index: torch.Tensor,
        edge_shift: torch.Tensor,
        cell: torch.Tensor,
        batch: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """Energies and derivatives (see the class docstring)."""
        data = dict(zip(INPUT_NAMES, (pos, z, edge_index, edge_shift, cell, batch)))
        out = self.model(data, compute_forces=True, compute_stress=self.stress)
        return tuple(out[name].detach() for name in output_names(self.stress))


def graph_tensors(inputs: GraphInputs) -> tuple[torch.Tensor, ...]:
    """The :data:`INPUT_NAMES` tensors of a read batch (``cell`` as ``[G, 3, 3]``)."""
    return (inputs.pos, inputs.z, inputs.edge_index, inputs.edge_shift, inputs.cell.reshape(-1, 3, 3), inputs.batch)


def size_class(tensors: tuple[torch.Tensor, ...]) -> tuple[int, int, int]:
    """``(N, E, G)`` each capped at 2: a traced graph serves every input of its class.

    ``make_fx`` (like ``torch.export``) specialises sizes 0 and 1 into the graph, so a graph
    traced with ``N, E, G >= 2`` serves all such inputs, and graphs for one atom, no edges or a
    single structure are traced separately.
    """
    pos, _, edge_index, _, cell, _ = tensors
    return min(pos.shape[0], 2), min(edge_index.shape[1], 2), min(cell.shape[0], 2)


@contextlib.contextmanager
def one_graph(model: torch.nn.Module) -> Iterator[None]:
    """Trace under this: a read of tensor values on the host becomes a ``ValueError`` naming ``model``'s class.

    Raises:
        ValueError: the traced forward reads tensor values on the host (a ``.item()``,
            ``bool(tensor)`` or a shape that depends on values): it cannot be one graph.
    """
    try:
        yield
    except (GuardOnDataDependentSymNode, torch._subclasses.fake_tensor.DataDependentOutputException) as error:
        raise ValueError(
            f"{type(model).__name__} cannot be traced into one graph: its forward reads tensor values on the host "
            f"({type(error).__name__}: {str(error).splitlines()[0]})"
        ) from error


@contextlib.contextmanager
def _distinct_symbols() -> Iterator[None]:
    """Every dynamic size its own symbol (no "duck" sharing with an equal static size, e.g. ``N == 3``)."""
    previous = fx_config.use_duck_shape
    fx_config.use_duck_shape = False
    try:
        yield
    finally:
        fx_config.use_duck_shape = previous


def trace(force_field: ForceField, example: tuple[torch.Tensor, ...]) -> torch.fx.GraphModule:
    """The graph of ``force_field`` on inputs of ``example``'s :func:`size_class`.

    Raises:
        ValueError: the model reads tensor values on the host in its forward (a ``.item()``,
            ``bool(tensor)`` or a shape that depends on values): it cannot be one graph.
    """
    with one_graph(force_field.model), _distinct_symbols():
        return make_fx(
            force_field, tracing_mode="symbolic", _allow_non_fake_inputs=True, _error_on_data_dependent_ops=True
        )(*[t.clone() for t in example])


def describe(force_field: ForceField, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Text metadata of a traced model: cutoff, species, dtype, inputs, outputs, class, config and versions."""
    import json

    from ..models.checkpoint import UNITS, package_versions

    model = force_field.model
    described = {
        "molequi_package_format": "1",
        "model": type(model).__name__,
        "r_max": repr(force_field.r_max),
        "species": " ".join(str(z) for z in model.config.get("species", [])),
        "dtype": str(force_field.dtype).removeprefix("torch."),
        "inputs": " ".join(INPUT_NAMES),
        "outputs": " ".join(output_names(force_field.stress)),
        "config": json.dumps(model.config, sort_keys=True),
        "units": json.dumps(UNITS, sort_keys=True),
        "versions": json.dumps(package_versions(), sort_keys=True),
    }
    described.update(extra or {})
    return described
