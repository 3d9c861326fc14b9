"""The model registry: built-in models register when molequi.models is imported, users' with the decorator."""

from __future__ import annotations

import subprocess
import sys

import pytest

from molequi.models import AtomisticModel, EquivariantPotential, NBodyNetwork, checkpoint, registry


def test_built_in_models_register_on_import_of_molequi_models():
    script = "import molequi.models.registry as r; print(sorted(r.MODEL_CLASSES))"
    names = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    assert names.strip() == "['EquivariantPotential', 'NBodyNetwork']"
    assert registry.model_class("EquivariantPotential") is EquivariantPotential
    assert registry.model_class("NBodyNetwork") is NBodyNetwork
    assert checkpoint.MODEL_CLASSES is registry.MODEL_CLASSES  # re-exported, not a second registry


def test_register_model_decorates_and_refuses_a_second_class_of_the_same_name(monkeypatch):
    monkeypatch.setattr(registry, "MODEL_CLASSES", dict(registry.MODEL_CLASSES))

    @registry.register_model
    class MyModel(AtomisticModel):
        def node_energies(self, inputs, edge_vec):
            raise NotImplementedError

    assert registry.model_class("MyModel") is MyModel
    assert registry.register_model(MyModel) is MyModel  # registering the same class again is harmless

    class Other(AtomisticModel):
        def node_energies(self, inputs, edge_vec):
            raise NotImplementedError

    Other.__name__ = "MyModel"
    with pytest.raises(ValueError, match="already registered as 'MyModel'"):
        registry.register_model(Other)
    with pytest.raises(ValueError, match="unknown model class 'Missing'; known: .*MyModel"):
        registry.model_class("Missing")
