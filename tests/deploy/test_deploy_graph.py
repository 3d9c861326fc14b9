"""Tracing a model into one graph: host synchronisations are refused by name; the stress path has none."""

from __future__ import annotations

import pytest
import torch
from deploy_systems import inputs

from molequi.deploy.graph import ForceField, graph_tensors, size_class, trace
from molequi.models import AtomisticModel, GraphInputs, read_graph_inputs


class HostReading(AtomisticModel):
    """A model whose forward reads a tensor value on the host (``float(tensor)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.r_max, self.config = 3.0, {"species": [1, 6, 8]}
        self.weight = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

    def node_energies(self, inputs: GraphInputs, edge_vec: torch.Tensor) -> dict[str, torch.Tensor]:
        longest = float(edge_vec.detach().norm(dim=1).max())  # a host sync: the value decides a Python float
        return {"node_energy": self.weight * inputs.pos.square().sum(dim=1) / longest}


def _tensors(name: str) -> tuple[torch.Tensor, ...]:
    return graph_tensors(read_graph_inputs(inputs(name), 3.0, dtype=torch.float64))


def test_a_host_read_in_forward_is_refused_naming_the_model():
    with pytest.raises(ValueError, match="HostReading cannot be traced into one graph"):
        trace(ForceField(HostReading()), _tensors("CH3CH2OH"))


def test_size_classes_separate_single_structures_and_edgeless_inputs():
    tensors = _tensors("CH3CH2OH")
    assert size_class(tensors) == (2, 2, 1)
    pos, z, edge_index, edge_shift, cell, batch = tensors
    assert size_class((pos[:1], z[:1], edge_index[:, :0], edge_shift[:0], cell, batch[:1])) == (1, 0, 1)


def test_stress_of_a_cell_without_volume_still_fails_in_eager(tiny_model):
    # the model checks the volume with torch._assert_async (no host sync), so the eager error stays
    with pytest.raises(RuntimeError, match="non-zero volume"):
        tiny_model(inputs("CH3CH2OH"), compute_stress=True)
