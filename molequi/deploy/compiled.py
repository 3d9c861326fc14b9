"""``torch.compile`` of a potential for inference: energy and forces (and stress) in one graph.

``torch.compile(model)`` itself stops at ``torch.autograd.grad`` inside ``forward`` (and at
e3nn's irreps under dynamo's guards). :class:`CompiledPotential` compiles instead the graph of
:func:`molequi.deploy.graph.trace`, in which the derivatives are already unfolded into aten
operations, with ``fullgraph=True`` and ``dynamic=True``: no graph breaks, no host
synchronisation, any atom and edge count without recompiling (one graph per
:func:`~molequi.deploy.graph.size_class`). Compiling takes minutes on a CPU (inductor generates
and builds C++); later calls of the same size class reuse the graph.

Example:
    >>> compiled = compile_potential(model)
    >>> out = compiled(batch)                # energy [G], forces [N, 3]; compute_stress=True adds stress
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from ..models import AtomisticModel, read_graph_inputs
from .accuracy import check_agreement, output_errors, tolerance_for
from .graph import ForceField, graph_tensors, output_names, size_class, trace, traceable_copy


class CompiledPotential(torch.nn.Module):
    """A potential evaluated through compiled graphs (inference: weights frozen, outputs detached).

    Args:
        model: the potential (copied; the caller's module is untouched).
        backend: ``torch.compile`` backend (default ``"inductor"``; ``"aot_eager"`` checks the
            graph capture without generating code).
        check: compare each newly compiled graph on its first input with the uncompiled graph
            (:data:`~molequi.deploy.accuracy.TOLERANCES`) and raise if they differ.

    Attributes:
        compile_seconds: wall time of tracing and compiling (first call included) per graph key.

    Shapes:
        ``forward(data) -> {"energy": [G], "forces": [N, 3]}`` plus ``"stress": [G, 3, 3]`` with
        ``compute_stress=True``; ``data`` as for the model (a PyG batch or a dict with edges).
    """

    def __init__(self, model: AtomisticModel, backend: str = "inductor", check: bool = True) -> None:
        super().__init__()
        frozen = traceable_copy(model)  # one copy shared by both graphs' wrappers
        self.force_fields = torch.nn.ModuleDict(
            {str(stress): ForceField(frozen, stress=stress, copy=False) for stress in (False, True)}
        )
        self.backend, self.check = backend, bool(check)
        self.r_max = float(model.r_max)
        self.config = dict(getattr(model, "config", {}))
        self._graphs: dict[tuple[Any, ...], Callable[..., tuple[torch.Tensor, ...]]] = {}
        self.compile_seconds: dict[tuple[Any, ...], float] = {}

    @property
    def dtype(self) -> torch.dtype:
        """The model's float dtype."""
        return self.force_fields["False"].dtype

    def forward(self, data: Any, compute_forces: bool = True, compute_stress: bool = False) -> dict[str, torch.Tensor]:
        """Energies, forces (always) and, with ``compute_stress``, stresses of ``data`` (see the class docstring)."""
        force_field = self.force_fields[str(bool(compute_stress))]
        tensors = graph_tensors(read_graph_inputs(data, self.r_max, dtype=self.dtype))
        key = (compute_stress, str(tensors[0].device), size_class(tensors))
        if key not in self._graphs:
            start = time.perf_counter()
            compiled = torch.compile(trace(force_field, tensors), dynamic=True, fullgraph=True, backend=self.backend)
            outputs = compiled(*tensors)
            self.compile_seconds[key] = time.perf_counter() - start
            if self.check:
                named = dict(zip(output_names(compute_stress), outputs))
                reference = dict(zip(output_names(compute_stress), force_field(*tensors)))
                check_agreement(output_errors(named, reference), tolerance_for(self.dtype), "the compiled graph")
            self._graphs[key] = compiled
        else:
            outputs = self._graphs[key](*tensors)
        return dict(zip(output_names(compute_stress), outputs))


def compile_potential(model: AtomisticModel, backend: str = "inductor", check: bool = True) -> CompiledPotential:
    """``model`` through ``torch.compile(..., fullgraph=True, dynamic=True)``; see :class:`CompiledPotential`."""
    return CompiledPotential(model, backend=backend, check=check)
