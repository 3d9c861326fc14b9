"""Energy models: the equivariant interatomic potential (and their shared force/stress machinery)."""

from .atomistic import AtomisticModel
from .checkpoint import load_model, model_from_dict, model_to_dict, register_model, save_model
from .inputs import GraphInputs, read_graph_inputs
from .potential import EquivariantPotential

__all__ = [
    "AtomisticModel",
    "EquivariantPotential",
    "GraphInputs",
    "load_model",
    "model_from_dict",
    "model_to_dict",
    "read_graph_inputs",
    "register_model",
    "save_model",
]
