"""Public test kit: equivariance checks for layers and models."""

from .equivariance import (
    TOLERANCES,
    assert_equivariant,
    assert_graph_layer_equivariant,
    default_tolerance,
    equivariance_error,
    graph_layer_equivariance_errors,
    random_o3,
)

__all__ = [
    "TOLERANCES",
    "assert_equivariant",
    "assert_graph_layer_equivariant",
    "default_tolerance",
    "equivariance_error",
    "graph_layer_equivariance_errors",
    "random_o3",
]
