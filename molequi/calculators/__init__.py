"""ASE calculators for molequi models: single model or committee, skin neighbour lists, batched prediction."""

from .batched import predict
from .calculator import MolequiCalculator
from .inference import prepare_models
from .neighbor_cache import Edges, SkinNeighborList

__all__ = ["Edges", "MolequiCalculator", "SkinNeighborList", "predict", "prepare_models"]
