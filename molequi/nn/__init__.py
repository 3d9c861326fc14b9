"""Equivariant layers: convolutions, nonlinearities, radial and edge embeddings."""

from . import nonlinearities
from .conv import EquivariantConv, InteractionBlock
from .edge_embedding import EdgeEmbedding, edge_vectors, safe_norm
from .radial import BesselBasis, PolynomialCutoff, RadialEmbedding
from .readout import DipoleReadout, ScalarReadout

__all__ = [
    "BesselBasis",
    "DipoleReadout",
    "EdgeEmbedding",
    "EquivariantConv",
    "InteractionBlock",
    "PolynomialCutoff",
    "RadialEmbedding",
    "ScalarReadout",
    "edge_vectors",
    "nonlinearities",
    "safe_norm",
]
