"""torch.export of the energy/forces/stress graph with dynamic atom and edge counts (no AOTInductor: no C++ build)."""

from __future__ import annotations

import torch
from deploy_systems import R_MAX, inputs

from molequi.deploy.export import dynamic_shapes, example_structures, graph_inputs
from molequi.deploy.graph import ForceField, trace
from molequi.deploy.runtime import package_inputs


def test_exported_program_equals_eager_on_other_sizes_and_a_periodic_cell(tiny_model):
    force_field = ForceField(tiny_model, stress=True)
    example = package_inputs(inputs("CH3CH2OH"), torch.float64, stress=True)
    program = torch.export.export(trace(force_field, example), example, dynamic_shapes=dynamic_shapes())
    exported = program.module()
    sizes = set()
    for name in ("C6H6", "box", "CH3CH2OH"):
        data = inputs(name)
        periodic = bool(data["pbc"].all())
        energy, forces, stress = exported(*package_inputs(data, torch.float64, stress=True))
        reference = tiny_model(data, compute_stress=periodic)
        assert float((energy - reference["energy"]).abs().max()) <= 1e-10 * float(reference["energy"].abs().max())
        assert float((forces - reference["forces"]).abs().max()) <= 1e-10
        if periodic:
            assert float((stress - reference["stress"]).abs().max()) <= 1e-10
        sizes.add((data["pos"].shape[0], data["edge_index"].shape[1]))
    assert len(sizes) == 3  # three atom and edge counts through one program


def test_example_structures_have_neighbours_and_two_sizes():
    structures = example_structures([1, 8], R_MAX, periodic=True)
    assert [len(a) for a in structures] == [12, 27, 27]
    assert [bool(a.pbc.all()) for a in structures] == [False, False, True]
    assert set(structures[0].numbers) == {1, 8}
    for atoms in structures:
        edges = graph_inputs(atoms, R_MAX, torch.float64, torch.device("cpu"))["edge_index"].shape[1]
        assert edges >= 2 * len(atoms)

