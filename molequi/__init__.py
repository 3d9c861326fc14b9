"""molequi: O(3)-equivariant graph neural networks on e3nn irreps for molecules and point clouds."""

__version__ = "0.1.0"
