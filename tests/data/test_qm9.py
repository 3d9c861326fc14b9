"""QM9 from the 25k npz, the original tarball layout and qm9pack: units, atom references, splits."""

import csv
import io
import tarfile

import numpy as np
import pytest
import torch

from molequi.data import QM9
from molequi.data.datasets import qm9 as qm9_module
from molequi.data.datasets.qm9 import UNITS, atomref
from molequi.data.datasets.qm9_sources import PROPERTIES, qm9pack_data_dir
from molequi.data.datasets.qm9_uncharacterized import UNCHARACTERIZED
from molequi.data.units import HARTREE, KCAL_PER_MOL

N = 150


@pytest.fixture(scope="module")
def npz(shared_data):
    return shared_data / "qm9/qm9_25k.npz"


@pytest.fixture(scope="module")
def raw(npz):
    with np.load(npz) as d:
        return {k: d[k] for k in ("gdb_idx", "offsets", "Z", "R", *PROPERTIES)}


@pytest.fixture(scope="module")
def subset(npz, tmp_path_factory):
    return QM9(source=npz, max_molecules=N, cache_dir=tmp_path_factory.mktemp("qm9"), dtype=torch.float64)


def test_npz_values_and_units(subset, raw):
    assert len(subset) == N
    assert UNITS["U0"] == "eV" and UNITS["mu"] == "D" and UNITS["alpha"] == "bohr^3" and UNITS["A"] == "GHz"
    for i in (0, 7, N - 1):
        g = subset[i]
        lo, hi = raw["offsets"][i], raw["offsets"][i + 1]
        assert g.qm9_id.item() == raw["gdb_idx"][i]
        assert g.z.tolist() == raw["Z"][lo:hi].tolist()
        assert torch.equal(g.pos, torch.tensor(raw["R"][lo:hi], dtype=torch.float64))
        assert g.U0.item() == pytest.approx(raw["U0"][i] * HARTREE, rel=1e-12)  # Ha -> eV
        assert g.energy.item() == g.U0.item()
        assert g.homo.item() == pytest.approx(raw["homo"][i] * HARTREE)
        assert g.mu.item() == raw["mu"][i] and g.alpha.item() == raw["alpha"][i] and g.Cv.item() == raw["Cv"][i]
    assert -714 * HARTREE < subset[0].U0.item() < -40 * HARTREE


def test_atomrefs_reproduce_deepchem_atomization_energies(shared_data):
    """u0_atom of the MoleculeNet CSV (kcal/mol) = U0 - sum of atom references."""
    from molequi.data.datasets.ase_reader import iter_frames

    molecules = [atoms for _, atoms in iter_frames(shared_data / "qm9/qm9_mini_deepchem.sdf")]
    rows = list(csv.DictReader(open(shared_data / "qm9/qm9_mini_deepchem.sdf.csv")))
    ref = atomref("U0")
    for atoms, row in zip(molecules, rows, strict=True):
        atomization = float(row["u0"]) * HARTREE - sum(ref[z] for z in atoms.numbers)
        assert atomization / KCAL_PER_MOL == pytest.approx(float(row["u0_atom"]), abs=0.05), row["mol_id"]


def test_subtract_atomrefs(npz, subset, tmp_path):
    sub = QM9(source=npz, max_molecules=20, subtract_atomrefs=True, cache_dir=tmp_path, dtype=torch.float64)
    for p in ("U0", "U", "H", "G"):
        ref = atomref(p)
        for i in (0, 19):
            expected = subset[i][p].item() - sum(ref[int(z)] for z in subset[i].z)
            assert sub[i][p].item() == pytest.approx(expected, abs=1e-9)
    assert sub[0].energy.item() == sub[0].U0.item() and -100 < sub[0].energy.item() < 0
    assert sub[0].homo.item() == subset[0].homo.item()  # non-energies untouched


def test_splits(subset):
    with pytest.raises(ValueError, match="do not fit"):
        subset.split()  # 110k + 10k on a small subset
    parts = subset.split((0.8, 0.1), seed=1)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [120, 15, 15]
    ids = {k: {g.qm9_id.item() for g in v} for k, v in parts.items()}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    again = subset.split((0.8, 0.1), seed=1)
    assert [g.qm9_id.item() for g in again["val"]] == [g.qm9_id.item() for g in parts["val"]]
    other = subset.split((0.8, 0.1), seed=2)
    assert [g.qm9_id.item() for g in other["val"]] != [g.qm9_id.item() for g in parts["val"]]


def qm9_xyz(qm9_id: int, z, pos, props) -> str:
    """One molecule in the layout of the original dsgdb9nsd_*.xyz files."""
    symbols = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}
    lines = [str(len(z)), f"gdb {qm9_id}\t" + "\t".join(repr(float(v)) for v in props)]
    for k, (s, p) in enumerate(zip(z, pos)):
        coords = [repr(float(x)) for x in p]
        if k == 0:  # Mathematica exponent notation occurs in the original files
            coords[0] = f"{float(p[0]) * 1e3!r}*^-3"
        lines.append("\t".join([symbols[int(s)], *coords, "0.0"]))
    lines += ["1.0\t2.0", "C\tC", "InChI=1S/x\tInChI=1S/x"]
    return "\n".join(lines) + "\n"


def test_original_tarball_layout_and_uncharacterized(raw, subset, tmp_path):
    archive = tmp_path / "dsgdb9nsd.xyz.tar.bz2"
    entries = [(int(raw["gdb_idx"][i]), i) for i in range(5)] + [(58, 5)]  # 58 is uncharacterized
    assert 58 in UNCHARACTERIZED and len(UNCHARACTERIZED) == 3054
    with tarfile.open(archive, "w:bz2") as tar:
        for qm9_id, i in entries:
            lo, hi = raw["offsets"][i], raw["offsets"][i + 1]
            text = qm9_xyz(qm9_id, raw["Z"][lo:hi], raw["R"][lo:hi], [raw[p][i] for p in PROPERTIES]).encode()
            info = tarfile.TarInfo(f"dsgdb9nsd_{qm9_id:06d}.xyz")
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    with pytest.warns(UserWarning, match="excluded 1 uncharacterized"):
        data = QM9(root=tmp_path, dtype=torch.float64)  # finds root/dsgdb9nsd.xyz.tar.bz2
    assert len(data) == 5 and (tmp_path / "processed").is_dir()
    for i in range(5):
        for key in ("z", "edge_index", "U0", "mu", "Cv", "qm9_id"):
            assert torch.equal(data[i][key], subset[i][key]), key
        assert torch.allclose(data[i].pos, subset[i].pos, atol=1e-12)


def test_qm9pack_source(raw, tmp_path):
    folder = qm9pack_data_dir()
    if folder is None:
        pytest.skip("qm9pack not installed")
    data = QM9(source=folder, max_molecules=40, cache_dir=tmp_path, dtype=torch.float64)
    assert [g.qm9_id.item() for g in data][:3] == [1, 2, 3]
    assert data[0].U0.item() == pytest.approx(-40.47893 * HARTREE)  # methane
    by_id = {int(q): i for i, q in enumerate(raw["gdb_idx"])}
    shared = [g for g in data if g.qm9_id.item() in by_id]
    for g in shared:  # the npz was converted from the same CSV
        i = by_id[g.qm9_id.item()]
        assert g.U0.item() == pytest.approx(raw["U0"][i] * HARTREE, rel=1e-12)
        assert torch.allclose(
            g.pos, torch.tensor(raw["R"][raw["offsets"][i] : raw["offsets"][i + 1]], dtype=torch.float64), atol=2e-7
        )


def test_missing_source_explains_how_to_get_qm9(tmp_path, monkeypatch):
    monkeypatch.setattr(qm9_module, "qm9pack_data_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install qm9pack.*ndownloader.figshare.com/files/3195389"):
        QM9(root=tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        QM9(source=tmp_path / "nothing.npz")
    with pytest.raises(ValueError, match="unknown QM9 property 'U00'"):
        QM9(source=tmp_path, energy_property="U00")
