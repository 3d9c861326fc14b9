"""Message-passing convolutions on e3nn irreps and the interaction block built from them."""

from .equivariant_conv import EquivariantConv
from .interaction_block import InteractionBlock

__all__ = ["EquivariantConv", "InteractionBlock"]
