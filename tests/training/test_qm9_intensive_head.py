"""EquivariantPotential(intensive=True): a mean-pooled invariant per molecule (the QM9 gap head), in float64."""

from __future__ import annotations

import torch
from e3nn import o3
from torch_geometric.data import Batch, Data

from molequi.models import EquivariantPotential, load_model, save_model

SMALL = {"num_layers": 2, "hidden_irreps": "8x0e+4x1o+2x2e", "lmax": 2, "num_radial": 4, "radial_hidden": [8], "readout_hidden": 8}
R_MAX = 3.0


def _model(**options) -> EquivariantPotential:
    torch.manual_seed(0)
    options = {**SMALL, "intensive": True, "intensive_shift": 6.8, "intensive_scale": 1.3, **options}
    return EquivariantPotential(["H", "C", "O"], r_max=R_MAX, **options)


def _molecule(shift: float = 0.0) -> dict[str, torch.Tensor]:
    """A rattled ethanol-like C2OH6, optionally translated along x."""
    generator = torch.Generator().manual_seed(3)
    pos = torch.tensor([[0.0, 0, 0], [1.5, 0, 0], [2.0, 1.3, 0], [-0.5, 0.9, 0.3], [-0.4, -0.9, 0.4], [-0.4, 0, -1],
                        [1.9, -0.5, 0.9], [1.9, -0.5, -0.9], [2.9, 1.4, 0.2]], dtype=torch.float64)  # fmt: skip
    pos = pos + 0.05 * torch.randn(pos.shape, generator=generator, dtype=torch.float64)
    return {"z": torch.tensor([6, 6, 8, 1, 1, 1, 1, 1, 1]), "pos": pos + torch.tensor([shift, 0.0, 0.0], dtype=torch.float64)}


def _intensive(model: EquivariantPotential, structure) -> torch.Tensor:
    return model(structure, compute_forces=False)["intensive"].detach()


def test_intensive_output_is_o3_permutation_and_translation_invariant(float64):
    model = _model()
    structure = _molecule()
    reference = _intensive(model, structure)
    assert reference.shape == (1,)
    for matrix in (o3.rand_matrix(dtype=torch.float64), -o3.rand_matrix(dtype=torch.float64)):  # rotation, rotoreflection
        moved = dict(structure, pos=structure["pos"] @ matrix.T + torch.tensor([0.3, -2.0, 1.0], dtype=torch.float64))
        assert torch.allclose(_intensive(model, moved), reference, rtol=0, atol=1e-10)
    order = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    permuted = {"z": structure["z"][order], "pos": structure["pos"][order]}
    assert torch.allclose(_intensive(model, permuted), reference, rtol=0, atol=1e-10)


def test_intensive_output_is_size_intensive_and_batches(float64):
    """Two copies beyond r_max in one graph give the value of one (a mean, not a sum); a batch gives each graph's own."""
    model = _model()
    one, far = _molecule(), _molecule(shift=4 * R_MAX)
    single = _intensive(model, one)
    dimer = {"z": torch.cat([one["z"], far["z"]]), "pos": torch.cat([one["pos"], far["pos"]])}
    assert torch.allclose(_intensive(model, dimer), single, rtol=0, atol=1e-12)
    other = {"z": one["z"][:6], "pos": one["pos"][:6]}
    batch = Batch.from_data_list([Data(**one), Data(**other)])
    together = _intensive(model, batch)
    assert torch.allclose(together, torch.cat([single, _intensive(model, other)]), rtol=0, atol=1e-12)


def test_intensive_shift_and_scale_apply_to_the_mean_readout(float64):
    structure = _molecule()
    base = _intensive(_model(intensive_shift=0.0, intensive_scale=1.0), structure)
    assert torch.allclose(_intensive(_model(), structure), 6.8 + 1.3 * base, rtol=0, atol=1e-12)
    assert _intensive(_model(intensive_scale=0.0), structure).item() == 6.8


def test_energy_path_is_unchanged_and_the_head_survives_a_model_file(float64, tmp_path):
    structure = _molecule()
    torch.manual_seed(0)
    plain = EquivariantPotential(["H", "C", "O"], r_max=R_MAX, **SMALL)
    assert "intensive" not in plain(structure, compute_forces=False)
    model = _model()
    assert torch.equal(model(structure, compute_forces=False)["energy"], plain(structure, compute_forces=False)["energy"])
    save_model(model, tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.config["intensive_shift"] == 6.8
    assert torch.equal(_intensive(loaded, structure), _intensive(model, structure))
