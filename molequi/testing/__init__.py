"""Public test kit: equivariance checks for layers and models."""

from .equivariance import (
    TOLERANCES,
    assert_equivariant,
    assert_graph_layer_equivariant,
    default_tolerance,
    equivariance_error,
    graph_layer_equivariance_errors,
    random_o3,
    wigner_matrices,
)
from .physics import finite_difference_force_error, finite_difference_stress_error, model_equivariance_errors

__all__ = [
    "TOLERANCES",
    "assert_equivariant",
    "assert_graph_layer_equivariant",
    "default_tolerance",
    "equivariance_error",
    "finite_difference_force_error",
    "finite_difference_stress_error",
    "graph_layer_equivariance_errors",
    "model_equivariance_errors",
    "random_o3",
    "wigner_matrices",
]
