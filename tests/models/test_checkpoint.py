"""Model files: the current format, and older files upgraded on load to the same numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from molequi.dtypes import default_dtype
from molequi.models import EquivariantPotential, load_model, model_from_dict, save_model
from molequi.models.checkpoint import FORMAT_VERSION, upgrade_state_dict

REFERENCE = Path(__file__).resolve().parent / "reference"
SMALL = {"hidden_irreps": "4x0e+2x1o", "num_layers": 2, "radial_hidden": (8,), "readout_hidden": 4}


def _structure() -> dict[str, torch.Tensor]:
    pos = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0], [0.5, 0.5, 1.1]], dtype=torch.float64)
    return {"z": torch.tensor([8, 1, 1, 6]), "pos": pos}


def _model() -> EquivariantPotential:
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        return EquivariantPotential(["H", "C", "O"], r_max=3.0, **SMALL).eval()


def test_model_files_hold_no_convolution_edge_embedding(tmp_path):
    model = _model()
    save_model(model, tmp_path / "model.pt")
    record = torch.load(tmp_path / "model.pt", weights_only=True)
    assert record["format_version"] == FORMAT_VERSION == 2
    assert not [key for key in record["state_dict"] if ".conv.edge_embedding." in key]
    assert "edge_embedding.radial.basis.frequencies" in record["state_dict"]  # the model's own, a buffer
    assert not [name for name, p in model.named_parameters() if not p.requires_grad]


def test_format_1_file_loads_upgraded_and_saves_as_the_current_format(tmp_path):
    path = REFERENCE / "potential_gate.pt"
    record = torch.load(path, weights_only=True)
    assert record["format_version"] == 1
    dropped = [key for key in record["state_dict"] if ".conv.edge_embedding." in key]
    assert dropped  # written when every convolution held an unused edge embedding
    model = load_model(path)
    assert not set(dropped) & set(model.state_dict())
    save_model(model, tmp_path / "again.pt")
    again = load_model(tmp_path / "again.pt")
    assert torch.load(tmp_path / "again.pt", weights_only=True)["format_version"] == FORMAT_VERSION
    structure = _structure()
    for key in ("energy", "forces"):
        assert torch.equal(again(structure)[key], model(structure)[key])


def test_upgrade_fills_missing_buffers_from_the_model_and_keeps_the_values_of_the_file():
    model = _model()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    state["blocks.0.conv.edge_embedding.radial.basis.frequencies"] = torch.ones(8)
    del state["edge_embedding.radial.basis.frequencies"]
    upgraded = upgrade_state_dict(state, 1, model)
    assert set(upgraded) == set(model.state_dict())
    torch.testing.assert_close(
        upgraded["edge_embedding.radial.basis.frequencies"], model.edge_embedding.radial.basis.frequencies
    )
    kept = [key for key in state if ".conv.edge_embedding." not in key]
    assert kept and all(upgraded[key] is state[key] for key in kept)  # the file's values, not the model's


@pytest.mark.parametrize("version", [0, 3, None])
def test_unknown_format_or_class_is_refused(version):
    record = {"format_version": version, "model": "EquivariantPotential", "config": {}, "state_dict": {}}
    with pytest.raises(ValueError, match=f"unsupported model file format {version!r}.*reads 1 to {FORMAT_VERSION}"):
        model_from_dict(record)
    record = {"format_version": FORMAT_VERSION, "model": "Nope", "config": {}, "state_dict": {}}
    with pytest.raises(ValueError, match="names an unknown model class 'Nope'; known: .*EquivariantPotential"):
        model_from_dict(record)
