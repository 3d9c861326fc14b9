"""The model classes a model file or a training config can name, registered with :func:`register_model`.

Each model module decorates its class, so importing :mod:`molequi.models` registers the built-in
models (:class:`~molequi.models.EquivariantPotential`, :class:`~molequi.models.NBodyNetwork`);
a user's model registers the same way::

    @register_model
    class MyModel(AtomisticModel): ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .atomistic import AtomisticModel

#: Registered model classes by name (the class name).
MODEL_CLASSES: dict[str, type[AtomisticModel]] = {}

ModelClass = TypeVar("ModelClass", bound="type[AtomisticModel]")


def register_model(cls: ModelClass) -> ModelClass:
    """Make ``cls`` loadable from model files and nameable in configs, under ``cls.__name__`` (a class decorator).

    Raises:
        ValueError: another class is already registered under that name.
    """
    name = cls.__name__
    known = MODEL_CLASSES.get(name)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"register_model: {known.__module__}.{known.__qualname__} is already registered as {name!r}")
    MODEL_CLASSES[name] = cls
    return cls


def model_class(name: str) -> type[AtomisticModel]:
    """The class registered as ``name``.

    Raises:
        ValueError: no such model (the message lists the known ones).
    """
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model class {name!r}; known: {', '.join(sorted(MODEL_CLASSES))}")
    return MODEL_CLASSES[name]
