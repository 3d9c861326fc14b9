"""N-body networks (Kondor; Cormorant): atoms -> fragments -> molecules, Clebsch-Gordan nonlinearities.

Importing this package registers :class:`NBodyNetwork` for model files (``model.name: NBodyNetwork``).
"""

from .fragments import BOND_FACTOR, Hierarchy, build_hierarchy, decompose, fragment_labels
from .network import FRAGMENT_INDEX, NBodyNetwork

__all__ = [
    "BOND_FACTOR",
    "FRAGMENT_INDEX",
    "Hierarchy",
    "NBodyNetwork",
    "build_hierarchy",
    "decompose",
    "fragment_labels",
]
