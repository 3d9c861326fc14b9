"""``molequi deploy``: a model file as an AOTInductor package, checked against the eager model.

Steps: the model's :class:`~molequi.deploy.graph.ForceField` is traced into one graph
(:func:`~molequi.deploy.graph.trace`), exported with ``torch.export`` with dynamic atom and edge
counts, compiled and packaged by AOTInductor with text metadata, loaded back with the runtime
loader, and evaluated on structures of different sizes next to the eager model: the package is
kept only if every output agrees within the tolerance (:mod:`molequi.deploy.accuracy`); it is
written atomically. The format is described in :mod:`molequi.deploy.runtime`.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from ..data import atoms_to_graph
from ..models import AtomisticModel, load_model
from .accuracy import check_agreement, output_errors, tolerance_for
from .graph import ForceField, describe, trace
from .runtime import PackagedPotential, package_inputs


@dataclass
class DeployReport:
    """What :func:`deploy` did.

    Attributes:
        path: the package written.
        seconds: wall time per stage (``trace``, ``export``, ``compile``, ``check``).
        errors: per checked structure (``"<formula> (<N> atoms[, periodic])"``), the error of every output
            (:func:`~molequi.deploy.accuracy.output_errors`).
        tolerance: the bound every error met.
    """

    path: Path
    seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, dict[str, float]] = field(default_factory=dict)
    tolerance: float = 0.0


def example_structures(species: Sequence[int], r_max: float, periodic: bool) -> list[Atoms]:
    """Structures of the model's elements for tracing and checking: two clusters of different sizes (and a box).

    Atoms sit on a rattled grid of spacing ``min(max(r_max / 2, 1), 2)`` Å, their elements
    cycling through ``species``, so every atom has neighbours within ``r_max``; with ``periodic``
    a rattled, slightly sheared periodic box of 27 atoms is added (for the stress).
    """
    rng = np.random.default_rng(0)
    spacing = min(max(r_max / 2, 1.0), 2.0)

    def grid(shape: tuple[int, int, int]) -> np.ndarray:
        points = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
        return spacing * (points + rng.normal(scale=0.08, size=points.shape))

    def numbers(count: int) -> list[int]:
        return [int(species[k % len(species)]) for k in range(count)]

    structures = [Atoms(numbers=numbers(n), positions=grid(shape)) for n, shape in ((12, (3, 2, 2)), (27, (3, 3, 3)))]
    if periodic:
        cell = 3 * spacing * np.eye(3) + np.array([[0, 0, 0], [0.1 * spacing, 0, 0], [0, 0.1 * spacing, 0]])
        structures.append(Atoms(numbers=numbers(27), positions=grid((3, 3, 3)), cell=cell, pbc=True))
    return structures


def graph_inputs(atoms: Atoms, r_max: float, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """The model input of one structure (the calculator's: ``z, pos, edge_index, edge_shift, cell [1, 3, 3], pbc``)."""
    graph = atoms_to_graph(atoms, r_max, dtype=dtype)
    names = ("z", "pos", "edge_index", "edge_shift", "cell", "pbc")
    return {name: graph[name].to(device) for name in names}


def dynamic_shapes() -> tuple[dict[int, torch.export.Dim] | None, ...]:
    """Dynamic dimensions of the :data:`~molequi.deploy.graph.INPUT_NAMES` for ``torch.export``: atoms, edges (>= 2)."""
    atoms, edges = torch.export.Dim("num_atoms", min=2), torch.export.Dim("num_edges", min=2)
    return ({0: atoms}, {0: atoms}, {1: edges}, {0: edges}, None, {0: atoms})


def deploy(
    model: AtomisticModel | str | os.PathLike,
    path: str | os.PathLike,
    structures: Sequence[Atoms] | None = None,
    stress: bool = True,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    tolerance: float | None = None,
) -> DeployReport:
    """Write ``model`` as a package at ``path`` (a ``.pt2`` file) and check it against the eager model.

    Args:
        model: a model or a model file.
        path: the package to write (``.pt2``).
        structures: structures to check on (default :func:`example_structures`); the first
            one is traced and needs at least 2 atoms and 2 edges within ``r_max``.
        stress: also compute stress (periodic cells); molecules are evaluated either way.
        device: where the package runs (``cpu`` or ``cuda``; compiled for that kind of device).
        dtype: the package's precision (default: the model's).
        tolerance: the largest error accepted (default: :data:`~molequi.deploy.accuracy.TOLERANCES`).

    Raises:
        ValueError: ``path`` without the ``.pt2`` suffix, a model that cannot be one graph, a
            structure it cannot evaluate, or a package beyond the tolerance (nothing is written).
    """
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"the package path must end in .pt2 (AOTInductor's format), got {path}")
    eager = load_model(model) if isinstance(model, (str, os.PathLike)) else copy.deepcopy(model)
    device = torch.device(device)
    eager = eager.to(device=device, dtype=dtype).eval()
    dtype = next(eager.parameters()).dtype
    tolerance = tolerance_for(dtype) if tolerance is None else float(tolerance)
    species = eager.config["species"]
    structures = list(structures) if structures is not None else example_structures(species, eager.r_max, stress)
    inputs = [graph_inputs(atoms, eager.r_max, dtype, device) for atoms in structures]
    report = DeployReport(path=path, tolerance=tolerance)

    force_field = ForceField(eager, stress=stress)
    example = package_inputs(inputs[0], dtype, stress)
    start = time.perf_counter()
    graph = trace(force_field, example)
    report.seconds["trace"] = time.perf_counter() - start
    start = time.perf_counter()
    program = torch.export.export(graph, example, dynamic_shapes=dynamic_shapes())
    report.seconds["export"] = time.perf_counter() - start
    metadata = describe(force_field, {"device": device.type, "checked_tolerance": repr(tolerance)})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.pt2")
    start = time.perf_counter()
    try:
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(partial), inductor_configs={"aot_inductor.metadata": metadata}
        )
        report.seconds["compile"] = time.perf_counter() - start
        start = time.perf_counter()
        package = PackagedPotential(partial, device)
        for atoms, data in zip(structures, inputs):
            with_stress = stress and bool(data["pbc"].all())
            reference = eager(data, compute_forces=True, compute_stress=with_stress)
            errors = output_errors(package(data, compute_stress=with_stress), reference)
            name = f"{atoms.get_chemical_formula()} ({len(atoms)} atoms{', periodic' if with_stress else ''})"
            check_agreement(errors, tolerance, f"the package on {name}")
            report.errors[name] = errors
        report.seconds["check"] = time.perf_counter() - start
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return report

