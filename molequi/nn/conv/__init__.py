"""Message-passing convolutions on e3nn irreps and the interaction block built from them."""

from .equivariant_conv import BACKENDS, EquivariantConv
from .interaction_block import InteractionBlock

__all__ = ["BACKENDS", "EquivariantConv", "InteractionBlock"]
