"""``torch.compile`` of a training step: energy and forces in one graph that stays differentiable in the weights.

:func:`trace_training` records ``(parameters, buffers, pos, z, edge_index, edge_shift, cell,
batch) -> (energy, forces)`` of a potential with ``make_fx`` in symbolic mode: the weights are
inputs (of static shapes) instead of constants, the atom, edge and graph counts stay symbols,
and the force derivative by ``torch.autograd.grad`` is unfolded into the same graph of aten
operations (as in :mod:`molequi.deploy.graph`). :class:`CompiledTrainingStep` compiles that
graph with ``torch.compile(fullgraph=True, dynamic=True)`` and calls it with the live
parameters of the model: aot_autograd differentiates the whole graph, force derivative
included, so ``loss.backward()`` of a force loss fills ``model.parameters()``' gradients (the
double backward of eager training) and an optimizer on ``model.parameters()`` works unchanged.

Modes: the graph is traced from a train-mode copy (``create_graph=True``). molequi's potentials
have no dropout or batch normalisation, so the traced graph does not depend on the mode; the
live model's mode is neither read nor changed.

Example:
    >>> step = CompiledTrainingStep(model)
    >>> pred = step(batch)                    # energy [G], forces [N, 3], differentiable in the weights
    >>> loss(pred, batch).backward(); optimizer.step()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch._dynamo.source import ConstantSource
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.experimental.symbolic_shapes import (
    DimDynamic,
    ShapeEnv,
    StatelessSymbolicContext,
)

from ..data import keys
from ..models import AtomisticModel, read_graph_inputs
from .accuracy import check_agreement, output_errors, tolerance_for
from .graph import INPUT_NAMES, _distinct_symbols, graph_tensors, one_graph, size_class, torch_backend_copy

#: The outputs of the training graph, in order: ``energy [G]`` (float64) and ``forces [N, 3]``.
OUTPUT_NAMES = (keys.ENERGY, keys.FORCES)
#: The dynamic dimension of each of :data:`~molequi.deploy.graph.INPUT_NAMES`: N, N, E, E, G, N.
DYNAMIC_DIMS = (0, 0, 1, 0, 0, 0)


def training_copy(model: AtomisticModel) -> AtomisticModel:
    """A train-mode :func:`~molequi.deploy.graph.torch_backend_copy` of ``model``.

    Only the copy's code is used: its weights are swapped for the caller's by ``functional_call``.
    """
    return torch_backend_copy(model).train()


class TrainingForceField:
    """``(*parameters, *buffers, pos, z, edge_index, edge_shift, cell, batch) -> (energy, forces)`` of a model.

    Args:
        model: the model whose code runs (e.g. a :func:`training_copy`); its own weights are
            replaced by the arguments through ``torch.func.functional_call``.

    Shapes:
        parameters and buffers as ``model.named_parameters()`` and ``model.named_buffers()``;
        graph inputs as :data:`~molequi.deploy.graph.INPUT_NAMES`; outputs ``energy [G]``
        (float64) and ``forces [N, 3]`` in the model's dtype, not detached.
    """

    def __init__(self, model: AtomisticModel) -> None:
        self.model = model
        self.parameter_names = tuple(name for name, _ in model.named_parameters())
        self.buffer_names = tuple(name for name, _ in model.named_buffers())

    def __call__(self, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies and forces (see the class docstring)."""
        num_parameters, num_weights = len(self.parameter_names), len(self.parameter_names) + len(self.buffer_names)
        parameters = dict(zip(self.parameter_names, args[:num_parameters]))
        buffers = dict(zip(self.buffer_names, args[num_parameters:num_weights]))
        data = dict(zip(INPUT_NAMES, args[num_weights:]))
        out = torch.func.functional_call(self.model, (parameters, buffers), (data,), {"compute_forces": True})
        return out[keys.ENERGY], out[keys.FORCES]


def _fake_inputs(weights: Sequence[torch.Tensor], tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Fake copies: weights of static shapes, graph inputs with a symbol for their N, E or G dimension."""
    mode = FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True)
    fakes = []
    for index, tensor in enumerate([*weights, *tensors]):
        dynamic = DYNAMIC_DIMS[index - len(weights)] if index >= len(weights) else None
        sizes = [DimDynamic.DYNAMIC if dim == dynamic else DimDynamic.STATIC for dim in range(tensor.dim())]
        context = StatelessSymbolicContext(dynamic_sizes=sizes)
        fakes.append(mode.from_tensor(tensor.detach(), symbolic_context=context, source=ConstantSource(f"input{index}")))
    return fakes


def trace_training(
    force_field: TrainingForceField, weights: Sequence[torch.Tensor], example: Sequence[torch.Tensor]
) -> torch.fx.GraphModule:
    """The graph of ``force_field`` for weights like ``weights`` on inputs of ``example``'s :func:`size_class`.

    Args:
        force_field: the function to trace.
        weights: parameters then buffers, in ``force_field``'s order (only their shapes and dtypes are read).
        example: graph inputs (:data:`~molequi.deploy.graph.INPUT_NAMES`).

    Raises:
        ValueError: the model reads tensor values on the host in its forward: it cannot be one graph.
    """
    with one_graph(force_field.model), _distinct_symbols():
        fakes = _fake_inputs(weights, example)
        return make_fx(
            force_field, tracing_mode="symbolic", _allow_non_fake_inputs=True, _error_on_data_dependent_ops=True
        )(*fakes)


class CompiledTrainingStep:
    """Energies and forces of ``model`` through compiled graphs, differentiable in ``model``'s live parameters.

    Args:
        model: the potential being trained. Its parameters and buffers are read at every call
            (an optimizer on ``model.parameters()`` updates what the next call uses); the model
            itself is not changed.
        backend: ``torch.compile`` backend (default ``"inductor"``; ``"aot_eager"`` runs
            aot_autograd's graphs without generating code).
        check: compare each newly compiled graph's outputs on its first input with the
            uncompiled graph (:data:`~molequi.deploy.accuracy.TOLERANCES`) and raise if they differ.

    Attributes:
        compile_seconds: wall time of tracing and compiling (first call included, whose
            forward also lowers the backward graph under dynamic shapes) per graph key
            ``(device, size_class)``.

    Shapes:
        ``__call__(data) -> {"energy": [G] (float64), "forces": [N, 3]}`` with ``data`` as for
        the model (a PyG batch or a dict with edges); one graph serves every batch of a
        :func:`~molequi.deploy.graph.size_class`.
    """

    def __init__(self, model: AtomisticModel, backend: str = "inductor", check: bool = True) -> None:
        self.model = model
        self.force_field = TrainingForceField(training_copy(model))
        self.backend, self.check = backend, bool(check)
        self._graphs: dict[tuple[Any, ...], Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {}
        self.compile_seconds: dict[tuple[Any, ...], float] = {}

    def weights(self) -> list[torch.Tensor]:
        """The live model's parameters then buffers, in the graph's order (buffers marked static for dynamo)."""
        parameters, buffers = dict(self.model.named_parameters()), dict(self.model.named_buffers())
        for buffer in buffers.values():
            torch._dynamo.mark_static(buffer)  # else dynamo may tie a buffer's size to N or E and recompile
        return [parameters[name] for name in self.force_field.parameter_names] + [
            buffers[name] for name in self.force_field.buffer_names
        ]

    def __call__(self, data: Any, compute_forces: bool = True, compute_stress: bool = False) -> dict[str, torch.Tensor]:
        """Energies and forces of ``data`` (see the class docstring); the model's call signature.

        Raises:
            ValueError: ``compute_forces=False`` or ``compute_stress=True`` (the graph computes
                energy and forces only).
        """
        if not compute_forces or compute_stress:
            raise ValueError("CompiledTrainingStep computes energy and forces only (compute_forces=True, compute_stress=False)")
        weights = self.weights()
        tensors = graph_tensors(read_graph_inputs(data, float(self.model.r_max), dtype=weights[0].dtype))
        key = (str(tensors[0].device), size_class(tensors))
        if key not in self._graphs:
            start = time.perf_counter()
            graph = trace_training(self.force_field, weights, tensors)
            compiled = torch.compile(graph, dynamic=True, fullgraph=True, backend=self.backend)
            with _distinct_symbols():  # no "duck" sharing of equal sizes (e.g. N == E) in dynamo's guards
                outputs = compiled(*weights, *tensors)
            self.compile_seconds[key] = time.perf_counter() - start
            if self.check:
                with torch.no_grad():
                    reference = dict(zip(OUTPUT_NAMES, graph(*weights, *tensors)))
                check_agreement(
                    output_errors(dict(zip(OUTPUT_NAMES, outputs)), reference),
                    tolerance_for(weights[0].dtype),
                    "the compiled training graph",
                )
            self._graphs[key] = compiled
        else:
            outputs = self._graphs[key](*weights, *tensors)
        return dict(zip(OUTPUT_NAMES, outputs))
