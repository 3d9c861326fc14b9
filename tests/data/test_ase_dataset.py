"""ASEDataset on every file family of ../shared/data, unit conversion, caching and bad input."""

import warnings
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from molequi.data import ASEDataset, keys
from molequi.data.units import HARTREE, KCAL_PER_MOL

DEMO = Path(__file__).resolve().parents[2] / "datasets" / "demo"


def load(path, tmp_path, **kwargs):
    return ASEDataset(path, r_max=5.0, cache_dir=tmp_path, dtype=torch.float64, **kwargs)


def test_rmd17_aspirin_in_ev(shared_data, tmp_path):
    data = load(shared_data / "rmd17/aspirin_train_1200_macejax.xyz", tmp_path, index=":20")
    assert len(data) == 20
    g = data[0]
    assert g.z.tolist()[:7] == [6] * 7 and g.num_nodes == 21
    # rMD17 aspirin (PBE/def2-SVP) is about -406,27x kcal/mol = -17,617.8 eV.
    assert g.energy.item() == pytest.approx(-17617.8, abs=1.0)
    assert g.forces.shape == (21, 3) and g.forces.abs().max() < 20.0


@pytest.mark.parametrize(
    "relpath, unit, energy_ev",
    [
        ("rmd17/aspirin_1000_metatrain_meV.xyz", "meV", -17617.7),
        ("rmd17/ethanol_100_metatrain_kcalmol.xyz", "kcal/mol", -4209.6),
        ("md17/ethanol_md17_2000_schnetpack.xyz", "kcal/mol", -4214.8),  # original MD17: ~120 kcal/mol lower
        ("md17/aspirin_15_nequip.xyz", "kcal/mol", -17592.3),
    ],
)
def test_unit_conversion_of_shared_files(shared_data, tmp_path, relpath, unit, energy_ev):
    path = shared_data / relpath
    data = load(path, tmp_path, energy_unit=unit, index=":10")
    raw = ase.io.read(path, 0)
    factor = {"meV": 1e-3, "kcal/mol": KCAL_PER_MOL}[unit]
    assert data[0].energy.item() == pytest.approx(raw.get_potential_energy() * factor, rel=1e-12)
    assert data[0].energy.item() == pytest.approx(energy_ev, abs=1.0)
    assert torch.allclose(data[0].forces, torch.tensor(raw.get_forces() * factor))


@pytest.mark.parametrize(
    "relpath",
    [
        "rmd17/ethanol_1000a_metatrain.xyz",
        "rmd17/ethanol_1000b_metatrain.xyz",
        "rmd17/ethanol_botnet/train.xyz",
        "rmd17/ethanol_botnet/test_MD.xyz",
        "rmd17/ethanol_botnet/train_eth_meth.xyz",
        "rmd17/ethanol_botnet/test_norm_mode_874.xyz",
        "rmd17/ethanol_botnet/test_norm_mode_3005.xyz",
        "rmd17/ethanol_botnet/test_H_removal.xyz",
        "rmd17/ethanol_botnet/test_dimers.xyz",
        "rmd17/ethanol_botnet/test_eth_meth.xyz",
        "rmd17/aspirin_test_1800_macejax.xyz",
        "3bpa/train_300K.xyz",
        "3bpa/train_mixedT.xyz",
        "acac/train_300K.xyz",
        "acac/test_MD_600K.xyz",
        "acac/test_H_transfer.xyz",
        "acac/test_dihedral.xyz",
        "acac/train_600K.xyz",
        "acac/test_MD_300K.xyz",
    ],
)
def test_ev_extxyz_families_load(shared_data, tmp_path, relpath):
    data = load(shared_data / relpath, tmp_path, index=":8")
    assert 1 <= len(data) <= 8
    raw = ase.io.read(shared_data / relpath, 0)
    assert data[0].energy.item() == pytest.approx(raw.get_potential_energy())
    assert not data[0].pbc.any() and (data[0].cell == 0).all()  # 3BPA's 50 A "Lattice" has pbc F F F


@pytest.mark.parametrize(
    "relpath",
    ["rmd17/ethanol_botnet/isolated_atoms.xyz", "3bpa/iso_atoms.xyz", "acac/isolated_atoms.xyz"],
)
def test_isolated_atom_files(shared_data, tmp_path, relpath):
    data = load(shared_data / relpath, tmp_path)
    assert all(g.num_nodes == 1 and g.edge_index.shape[1] == 0 for g in data)


def test_iso17_database_with_named_keys(shared_data, tmp_path):
    data = load(
        shared_data / "iso17/iso17_40_schnetpack_test.db",
        tmp_path,
        energy_key="total_energy",
        forces_key="atomic_forces",
    )
    assert len(data) == 40 and data[0].num_nodes == 19
    assert data[0].energy.item() == pytest.approx(-11505.647279852)


def test_qm9_database_xyz_and_sdf(shared_data, tmp_path):
    db = load(
        shared_data / "qm9/qm9_20_schnetpack_test.db",
        tmp_path,
        energy_key="energy_U0",
        energy_unit="Ha",
        info_keys=["homo"],
    )
    assert len(db) == 20
    assert db[0].energy.item() == pytest.approx(-40.47893 * HARTREE)  # CH4, gdb 1
    assert db[0].homo.item() == pytest.approx(-0.3877)  # info keys are copied unconverted
    xyz = load(
        shared_data / "qm9/qm9_reduced_100_metatrain.xyz", tmp_path, energy_key="U0", energy_unit="Ha", info_keys=["mu"]
    )
    assert len(xyz) == 100 and xyz[0].energy.item() == pytest.approx(-40.47893 * HARTREE)
    sdf = load(shared_data / "qm9/qm9_mini_deepchem.sdf", tmp_path)
    assert len(sdf) == 21 and sdf[0].z.tolist() == [6, 1, 1, 1, 1]


def test_cache_is_reused_and_keyed_by_options(shared_data, tmp_path):
    path = shared_data / "rmd17/ethanol_botnet/test_MD.xyz"
    first = load(path, tmp_path, index=":5")
    assert len(list(tmp_path.glob("*.pt"))) == 1
    again = load(path, tmp_path, index=":5")
    assert torch.equal(again[3].pos, first[3].pos) and torch.equal(again[3].edge_index, first[3].edge_index)
    load(path, tmp_path, index=":6")
    assert len(list(tmp_path.glob("*.pt"))) == 2
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporary file


def test_demo_dataset(tmp_path):
    path = DEMO / "emt_cu.extxyz"
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ValueError, match=r"frame 120 \(0-based\): has targets .*stress.* fill_missing=True"):
        load(path, tmp_path)  # clusters have no stress, periodic frames do
    data = load(path, tmp_path, fill_missing=True)
    assert len(data) == 220
    periodic = [g for g in data if g.pbc.all()]
    assert len(periodic) == 100 and all(g.has_stress.item() for g in periodic)
    assert all(not g.has_stress.item() and (g.stress == 0).all() for g in data if not g.pbc.any())
    assert "has_energy" not in data[0] and "has_forces" not in data[0]  # present everywhere: no flag
    small = [g for g in periodic if g.num_nodes == 1]
    assert small and all((g.edge_index[0] == g.edge_index[1]).all() for g in small)  # only own images
    batch = next(iter(DataLoader(data, batch_size=220)))
    assert batch.stress.shape == (220, 3, 3) and batch.has_stress.shape == (220,) and int(batch.has_stress.sum()) == 100


def test_graphs_record_their_cutoff_through_the_cache(tmp_path):
    """A model refuses graphs built with a shorter cutoff than its own; the datasets record it (as text)."""
    path = DEMO / "emt_cu.extxyz"
    first = ASEDataset(path, r_max=3.5, index=":4", cache_dir=tmp_path, dtype=torch.float64)
    again = ASEDataset(path, r_max=3.5, index=":4", cache_dir=tmp_path, dtype=torch.float64)  # from the cache
    assert [g[keys.R_MAX] for g in first] == [g[keys.R_MAX] for g in again] == ["3.5"] * 4
    assert next(iter(DataLoader(again, batch_size=4)))[keys.R_MAX] == ["3.5"] * 4
    mixed = load(path, tmp_path, index="118:122", fill_missing=True)  # clusters, then periodic frames
    assert keys.availability_key(keys.R_MAX) not in mixed[0]  # the cutoff is no target to fill


def test_fill_missing_forces_have_atom_shape(tmp_path):
    path = tmp_path / "mixed.extxyz"
    a = ase.Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]])
    b = ase.Atoms("H3", positions=[[0, 0, 0], [0.9, 0, 0], [0, 0.9, 0]])
    from ase.calculators.singlepoint import SinglePointCalculator

    a.calc = SinglePointCalculator(a, energy=-1.0)
    b.calc = SinglePointCalculator(b, energy=-2.0, forces=np.ones((3, 3)))
    ase.io.write(path, [a, b], format="extxyz")
    data = load(path, tmp_path, fill_missing=True)
    assert data[0].forces.shape == (2, 3) and not data[0].has_forces.item() and data[1].has_forces.item()


def write_frames(path: Path, n: int, bad: dict[int, str]) -> None:
    frames = []
    for k in range(n):
        atoms = ase.Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
        atoms.info["REF_energy"] = -10.0 - k
        if bad.get(k) == "close":
            atoms.positions[2] = atoms.positions[1] + [0.01, 0.0, 0.0]
        elif bad.get(k) == "nan":
            atoms.positions[1, 0] = np.nan
        elif bad.get(k) == "no_energy":
            del atoms.info["REF_energy"]
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


@pytest.mark.parametrize(
    "kind, message",
    [
        ("close", r"frame 3 \(0-based\): atoms 1 and 2 are 0.0100 A apart"),
        ("nan", r"frame 3 \(0-based\): positions contains NaN"),
        ("no_energy", r"frame 3 \(0-based\): no energy under key 'REF_energy'"),
    ],
)
def test_bad_frames_name_file_and_frame(tmp_path, kind, message):
    path = tmp_path / "bad.extxyz"
    write_frames(path, 6, {3: kind})
    with pytest.raises(ValueError, match=f"bad.extxyz, {message}"):
        load(path, tmp_path, energy_key="REF_energy")


def test_skip_invalid_warns_how_many_and_why(tmp_path):
    path = tmp_path / "bad.extxyz"
    write_frames(path, 300, {3: "close", 290: "no_energy"})  # spans two chunks
    with pytest.warns(UserWarning, match=r"2 frame\(s\) skipped \(counted from 0\): frame 3: .*0.0100 A apart.*frame 290: .*no energy"):
        data = load(path, tmp_path, energy_key="REF_energy", skip_invalid=True)
    assert len(data) == 298 and data[3].energy.item() == -14.0
    with pytest.warns(UserWarning, match="2 frame"):  # the cache remembers the skips
        load(path, tmp_path, energy_key="REF_energy", skip_invalid=True)


def test_unknown_element_for_the_model(tmp_path):
    path = tmp_path / "water.extxyz"
    write_frames(path, 2, {})
    with pytest.raises(
        ValueError, match=r"water.extxyz, frame 0 \(0-based\): element\(s\) O \(Z=8\) not among the supported elements \[H, C\]"
    ):
        load(path, tmp_path, elements=[1, 6])


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.xyz"):
        load(tmp_path / "nothere.xyz", tmp_path)
    junk = tmp_path / "junk.foo"
    junk.write_text("not a structure\n")
    with pytest.raises(ValueError, match="junk.foo: unknown file format"):
        load(junk, tmp_path)
    with pytest.raises(ValueError, match=r"junk.foo: cannot parse frame 0 \(0-based\) as extxyz"):
        load(junk, tmp_path, format="extxyz")
    with pytest.raises(ValueError, match="unknown energy unit"):
        load(DEMO / "emt_isolated_atoms.extxyz", tmp_path, energy_unit="kcal")


def test_quiet_on_valid_files(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load(DEMO / "emt_isolated_atoms.extxyz", tmp_path)
    assert [g.z.item() for g in data] == [29, 79]
