"""MD17 (Chmiela et al. 2017) and revised MD17 (Christensen & von Lilienfeld 2020).

Both releases store energies in kcal/mol and forces in kcal/mol/A; they are converted
to eV and eV/A with :data:`molequi.data.units.KCAL_PER_MOL`. The two releases use
different levels of theory and differ by ~120 kcal/mol on ethanol, so they must not be
mixed: the layout of the npz file tells which release it is, and it must match ``revised``.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from molequi.data import keys
from molequi.data.datasets.builder import build_graphs
from molequi.data.datasets.cache import GraphDataset, cache_file, file_identity
from molequi.data.datasets.download import download as fetch
from molequi.data.structure import Structure
from molequi.data.units import KCAL_PER_MOL

#: Original MD17 npz files (sGDML site), by molecule.
MD17_URL = "http://www.quantum-machine.org/gdml/data/npz/{file}"
MD17_FILES = {
    "aspirin": "md17_aspirin.npz",
    "azobenzene": "azobenzene_dft.npz",
    "benzene": "md17_benzene2017.npz",
    "ethanol": "md17_ethanol.npz",
    "malonaldehyde": "md17_malonaldehyde.npz",
    "naphthalene": "md17_naphthalene.npz",
    "paracetamol": "paracetamol_dft.npz",
    "salicylic": "md17_salicylic.npz",
    "toluene": "md17_toluene.npz",
    "uracil": "md17_uracil.npz",
}
#: Revised MD17: one archive (figshare, doi:10.6084/m9.figshare.12672038.v3) holding
#: ``rmd17/npz_data/rmd17_<molecule>.npz`` for the same ten molecules.
RMD17_URL = "https://figshare.com/ndownloader/files/23950376"
RMD17_ARCHIVE = "rmd17.tar.bz2"

#: npz key names of each release: (positions, atomic numbers, energies, forces).
ORIGINAL_KEYS = ("R", "z", "E", "F")
REVISED_KEYS = ("coords", "nuclear_charges", "energies", "forces")


def read_md17_npz(
    source: str | Path | io.BytesIO, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Read either npz layout and convert to eV units.

    Args:
        source: npz path or file object.
        name: file name for error messages.

    Returns:
        numbers [N], positions [F, N, 3] (A), energies [F] (eV), forces [F, N, 3] (eV/A),
        and whether the file has the revised (rMD17) layout.

    Raises:
        ValueError: if the file has neither layout or inconsistent shapes.
    """
    with np.load(source) as npz:
        found = set(npz.files)
        if set(ORIGINAL_KEYS) <= found:
            revised, names = False, ORIGINAL_KEYS
        elif set(REVISED_KEYS) <= found:
            revised, names = True, REVISED_KEYS
        else:
            raise ValueError(
                f"{name}: not an MD17 npz; expected keys {ORIGINAL_KEYS} (MD17) or {REVISED_KEYS} (rMD17), "
                f"found {sorted(found)}"
            )
        pos, z, energy, forces = (np.asarray(npz[k]) for k in names)
    n_frames, n_atoms = pos.shape[0], z.shape[0]
    energy = energy.reshape(-1)
    if pos.shape != (n_frames, n_atoms, 3) or forces.shape != pos.shape or energy.shape != (n_frames,):
        raise ValueError(
            f"{name}: inconsistent shapes: positions {pos.shape}, numbers {z.shape}, "
            f"energies {energy.shape}, forces {forces.shape}"
        )
    return (
        z.astype(np.int64),
        pos.astype(np.float64),
        energy.astype(np.float64) * KCAL_PER_MOL,
        forces.astype(np.float64) * KCAL_PER_MOL,
        revised,
    )


class MD17(GraphDataset):
    """MD17 or revised MD17 trajectories as graphs with ``energy`` (eV) and ``forces`` (eV/A).

    Looks for, in this order: ``root`` itself if it is an ``.npz`` file; in the folder
    ``root``: ``rmd17_<molecule>.npz`` / ``rmd17/npz_data/rmd17_<molecule>.npz`` /
    the archive ``rmd17.tar.bz2`` (revised) or the sGDML file name (original, see
    :data:`MD17_FILES`). With ``download=True`` a missing file is fetched into ``root``.

    Args:
        root: folder of the raw files (also the default cache folder, ``root/processed``),
            or the path of one npz file.
        molecule: one of :data:`MD17_FILES` (ignored when ``root`` is an npz file).
        revised: rMD17 (True) or the original MD17 (False). The file's layout must agree.
        r_max: neighbour-list cutoff, Angstrom.
        download: fetch a missing file from :data:`MD17_URL` / :data:`RMD17_URL`.
        max_frames: keep only the first ``max_frames`` frames (for quick experiments).
        dtype: float dtype of the graphs (default ``torch.get_default_dtype()``).
        cache_dir: folder of the processed file (default ``root/processed``, or the
            folder of the npz file).
        transform: PyG transform applied on access.

    Raises:
        FileNotFoundError: if no file is found (the message gives the URL).
        ValueError: for an unknown molecule, a file of the other release, or bad frames.
    """

    def __init__(
        self,
        root: str | Path,
        molecule: str = "aspirin",
        revised: bool = True,
        r_max: float = 5.0,
        download: bool = False,
        max_frames: int | None = None,
        dtype: torch.dtype | None = None,
        cache_dir: str | Path | None = None,
        transform: Callable | None = None,
    ) -> None:
        root = Path(root)
        if root.suffix != ".npz" and molecule not in MD17_FILES:
            raise ValueError(f"unknown MD17 molecule {molecule!r}; choose from {', '.join(MD17_FILES)}")
        self.molecule, self.revised = molecule, revised
        source, member = self._locate(root, download)
        dtype = dtype or torch.get_default_dtype()
        default_cache = root.parent if root.suffix == ".npz" else root / "processed"
        options = dict(
            source=file_identity(source),
            member=member,
            revised=revised,
            r_max=r_max,
            max_frames=max_frames,
            dtype=str(dtype),
        )
        name = f"{source}:{member}" if member else str(source)

        def build():
            z, pos, energy, forces, is_revised = read_md17_npz(self._open(source, member), name)
            if is_revised != revised:
                layout = "revised MD17 (rMD17)" if is_revised else "original MD17"
                raise ValueError(
                    f"{name}: this file has the {layout} layout but revised={revised}; MD17 and rMD17 "
                    f"energies differ, pass revised={is_revised} if this is the file you meant"
                )
            frames = range(len(pos) if max_frames is None else min(max_frames, len(pos)))

            def structures() -> Iterator[tuple[int, Structure]]:
                for f in frames:
                    targets = {keys.ENERGY: energy[f], keys.FORCES: forces[f]}
                    yield f, Structure.create(z, pos[f], targets=targets, where=f"{name}, frame {f} (0-based)")

            graphs, skipped = build_graphs(structures(), r_max, dtype)
            return graphs, {
                "source": name,
                "revised": revised,
                "units": {"energy": "eV", "forces": "eV/A"},
                "skipped": skipped,
            }

        kind = f"{'rmd17' if revised else 'md17'}_{molecule if root.suffix != '.npz' else root.stem}"
        super().__init__(
            cache_file(cache_dir if cache_dir is not None else default_cache, kind, options), build, transform
        )

    def _locate(self, root: Path, download: bool) -> tuple[Path, str | None]:
        """The npz file (or archive and member) holding the requested molecule."""
        if root.suffix == ".npz":
            if not root.exists():
                raise FileNotFoundError(f"{root}: no such file")
            return root, None
        if self.revised:
            npz = f"rmd17_{self.molecule}.npz"
            for candidate in (root / npz, root / "rmd17" / "npz_data" / npz, root / "npz_data" / npz):
                if candidate.exists():
                    return candidate, None
            archive, url = root / RMD17_ARCHIVE, RMD17_URL
            member = f"rmd17/npz_data/{npz}"
            if not archive.exists() and download:
                fetch(url, archive)
            if archive.exists():
                return archive, member
            raise FileNotFoundError(
                f"{root}: no {npz} or {RMD17_ARCHIVE}; download {url} (rmd17.tar.bz2) into {root}, "
                "or pass download=True"
            )
        path, url = root / MD17_FILES[self.molecule], MD17_URL.format(file=MD17_FILES[self.molecule])
        if not path.exists() and download:
            fetch(url, path)
        if path.exists():
            return path, None
        raise FileNotFoundError(f"{path}: no such file; download {url}, or pass download=True")

    @staticmethod
    def _open(source: Path, member: str | None) -> Path | io.BytesIO:
        """The npz itself, or the archive member read into memory."""
        if member is None:
            return source
        with tarfile.open(source, "r:*") as tar:
            try:
                handle = tar.extractfile(member)
            except KeyError:
                raise ValueError(f"{source}: archive has no member {member}") from None
            return io.BytesIO(handle.read())
