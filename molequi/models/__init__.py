"""Energy models: the equivariant interatomic potential, the N-body network, their force/stress machinery and model files."""

from .atomistic import AtomisticModel
from .checkpoint import load_model, model_from_dict, model_to_dict, save_model
from .inputs import GraphInputs, read_graph_inputs
from .nbody import NBodyNetwork
from .potential import EquivariantPotential
from .registry import register_model

__all__ = [
    "AtomisticModel",
    "EquivariantPotential",
    "GraphInputs",
    "NBodyNetwork",
    "load_model",
    "model_from_dict",
    "model_to_dict",
    "read_graph_inputs",
    "register_model",
    "save_model",
]
