"""Re-initialisation of composite modules (PyTorch Geometric's ``reset_parameters`` contract).

e3nn's layers have no ``reset_parameters``; they draw every ``weight`` from ``N(0, 1)`` (the
normalisation lives in the forward) and set every ``bias`` to zero at construction.
:func:`reset_children` re-does that, so a module built from them can offer ``reset_parameters``.
"""

from __future__ import annotations

import torch
from e3nn import o3
from e3nn.nn._fc import _Layer as _FullyConnectedLayer
from torch_geometric.nn import MessagePassing

#: e3nn layers whose parameters are ``weight`` (unit Gaussian) and ``bias`` (zero) only.
_E3NN_LAYERS = (o3.Linear, o3.TensorProduct, _FullyConnectedLayer)


def reset_children(module: torch.nn.Module) -> None:
    """Re-initialise the parameters of ``module``'s submodules as their constructors did.

    Walks the children in registration order (the order of construction, so that after
    ``torch.manual_seed(s)`` the weights equal those of a module built after the same seed): a child
    with its own ``reset_parameters`` is reset by it; an e3nn layer gets ``weight ~ N(0, 1)`` and
    ``bias = 0``; any other child is walked in turn. Parameters that are not trainable
    (``requires_grad=False``, e.g. fixed Bessel frequencies) are constants and are kept.

    Raises:
        TypeError: a trainable parameter this function does not know how to initialise (its name).
    """
    for name, child in module.named_children():
        if _has_own_reset(child):
            child.reset_parameters()
        elif isinstance(child, _E3NN_LAYERS):
            _reset_e3nn_layer(child)
        else:
            _reject_direct_parameters(child, name)
            reset_children(child)


def _has_own_reset(module: torch.nn.Module) -> bool:
    """``module`` has a ``reset_parameters`` that resets its weights (PyG's ``MessagePassing`` default only resets the aggregation)."""
    method = getattr(type(module), "reset_parameters", None)
    return callable(method) and method is not MessagePassing.reset_parameters


def _reset_e3nn_layer(layer: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, parameter in layer.named_parameters(recurse=False):
            if name == "weight":
                torch.nn.init.normal_(parameter)
            elif name == "bias":
                torch.nn.init.zeros_(parameter)
            else:
                raise TypeError(f"reset_parameters: {type(layer).__name__} has an unknown parameter {name!r}")


def _reject_direct_parameters(module: torch.nn.Module, name: str) -> None:
    trainable = [p for p, parameter in module.named_parameters(recurse=False) if parameter.requires_grad]
    if trainable:
        raise TypeError(
            f"reset_parameters: submodule {name!r} ({type(module).__name__}) has trainable parameters {trainable} "
            "and no reset_parameters method"
        )
