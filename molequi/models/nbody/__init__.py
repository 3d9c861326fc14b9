"""N-body networks (Kondor; Cormorant): atoms -> fragments -> molecule, Clebsch-Gordan nonlinearities.

Importing this package registers :class:`NBodyNetwork` for model files (``model.name: NBodyNetwork``).
"""

from .fragments import BOND_FACTOR, Hierarchy, build_hierarchy, decompose, fragment_labels
from .network import NBodyNetwork

__all__ = ["BOND_FACTOR", "Hierarchy", "NBodyNetwork", "build_hierarchy", "decompose", "fragment_labels"]
