"""MD17 / rMD17 npz readers, on tiny npz files built from the shared xyz frames in both layouts."""

import tarfile

import ase.io
import numpy as np
import pytest
import torch

from molequi.data import MD17, ASEDataset
from molequi.data.datasets.md17 import RMD17_URL
from molequi.data.units import KCAL_PER_MOL

N_FRAMES = 12


def frames_in_kcal(shared_data, relpath):
    frames = ase.io.read(shared_data / relpath, f":{N_FRAMES}")
    pos = np.stack([a.positions for a in frames])
    energy = np.array([a.get_potential_energy() for a in frames])
    forces = np.stack([a.get_forces() for a in frames])
    return frames[0].numbers, pos, energy, forces


@pytest.fixture
def original_npz(shared_data, tmp_path):
    """Original MD17 layout (R, z, E [F, 1], F) from the MD17 ethanol frames (kcal/mol)."""
    z, pos, energy, forces = frames_in_kcal(shared_data, "md17/ethanol_md17_2000_schnetpack.xyz")
    path = tmp_path / "md17_ethanol.npz"
    np.savez(path, R=pos, z=z, E=energy[:, None], F=forces, name="ethanol", theory="PBE+vdW-TS")
    return path


@pytest.fixture
def revised_npz(shared_data, tmp_path):
    """Revised MD17 layout (coords, nuclear_charges, energies, forces) from rMD17 ethanol frames (kcal/mol)."""
    z, pos, energy, forces = frames_in_kcal(shared_data, "rmd17/ethanol_100_metatrain_kcalmol.xyz")
    path = tmp_path / "rmd17_ethanol.npz"
    np.savez(path, coords=pos, nuclear_charges=z, energies=energy, forces=forces, old_indices=np.arange(N_FRAMES))
    return path


@pytest.mark.parametrize("layout", ["original", "revised"])
def test_npz_matches_the_xyz_reader_in_ev(request, shared_data, tmp_path, layout):
    npz = request.getfixturevalue(f"{layout}_npz")
    relpath = (
        "md17/ethanol_md17_2000_schnetpack.xyz" if layout == "original" else "rmd17/ethanol_100_metatrain_kcalmol.xyz"
    )
    data = MD17(npz, revised=layout == "revised", cache_dir=tmp_path / "cache", dtype=torch.float64)
    ref = ASEDataset(
        shared_data / relpath,
        energy_unit="kcal/mol",
        index=f":{N_FRAMES}",
        cache_dir=tmp_path / "cache",
        dtype=torch.float64,
    )
    assert len(data) == N_FRAMES
    for a, b in zip(data, ref):
        for key in ("z", "pos", "edge_index", "edge_shift", "energy", "forces"):
            assert torch.equal(a[key], b[key]), key
    expected = -97195.01189948035 * KCAL_PER_MOL if layout == "original" else -97079.92222178938 * KCAL_PER_MOL
    assert data[0].energy.item() == pytest.approx(expected)  # eV: about -4214.8 (MD17) / -4209.8 (rMD17)


def test_release_mismatch_is_an_error(original_npz, revised_npz, tmp_path):
    with pytest.raises(ValueError, match="original MD17 layout but revised=True"):
        MD17(original_npz, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="revised MD17 \\(rMD17\\) layout but revised=False"):
        MD17(revised_npz, revised=False, cache_dir=tmp_path)


def test_folder_layouts_and_archive(revised_npz, original_npz, tmp_path):
    root = tmp_path  # holds rmd17_ethanol.npz and md17_ethanol.npz
    assert len(MD17(root, "ethanol", max_frames=5)) == 5
    assert len(MD17(root, "ethanol", revised=False, max_frames=4)) == 4
    archive_root = tmp_path / "archive"
    archive_root.mkdir()
    with tarfile.open(archive_root / "rmd17.tar.bz2", "w:bz2") as tar:
        tar.add(revised_npz, arcname="rmd17/npz_data/rmd17_ethanol.npz")
    from_archive = MD17(archive_root, "ethanol")
    assert len(from_archive) == N_FRAMES and (archive_root / "processed").is_dir()
    with pytest.raises(ValueError, match="archive has no member rmd17/npz_data/rmd17_aspirin.npz"):
        MD17(archive_root, "aspirin")


def test_missing_unknown_and_malformed(tmp_path):
    with pytest.raises(FileNotFoundError, match=RMD17_URL):
        MD17(tmp_path, "aspirin")
    with pytest.raises(FileNotFoundError, match="md17_aspirin.npz"):
        MD17(tmp_path, "aspirin", revised=False)
    with pytest.raises(ValueError, match="unknown MD17 molecule 'water'"):
        MD17(tmp_path, "water")
    bad = tmp_path / "bad.npz"
    np.savez(bad, positions=np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="bad.npz: not an MD17 npz"):
        MD17(bad)
