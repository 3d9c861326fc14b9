"""Run a deployed package (``molequi deploy MODEL.pt OUT.pt2``) with torch alone.

The package format
------------------
``OUT.pt2`` is a PyTorch AOTInductor package (a zip archive written by
``torch._inductor.aoti_compile_and_package``): compiled machine code of one graph computing
energy, forces and (optionally) stress of one structure, the model's weights, and text metadata.
Neither molequi's model classes nor e3nn nor PyTorch Geometric are needed to run it:
``torch._inductor.aoti_load_package("OUT.pt2")`` in Python or ``AOTIModelPackageLoader`` in C++
load it. It runs only on the torch release that wrote it (``versions`` below; AOTInductor
packages are not portable across releases, and this loader refuses another one), on the kind of
device it was compiled for (``AOTI_DEVICE_KEY``: ``cpu`` or ``cuda``; on a CPU with the same
instruction set, ``AOTI_CPU_ISA``).

Inputs, in order (one structure; ``N >= 2`` atoms, ``E >= 2`` edges, both dynamic):
``pos [N, 3]`` (Å, the model's dtype), ``z [N]`` int64 atomic numbers, ``edge_index [2, E]``
int64 (row 0 source ``j``, row 1 target ``i``, every pair closer than ``r_max`` in both
directions), ``edge_shift [E, 3]`` (integer cell shifts in the model's dtype:
``edge_vec = pos[j] - pos[i] + edge_shift @ cell``), ``cell [1, 3, 3]`` (lattice vectors as
rows), ``batch [N]`` int64 zeros. Outputs: ``energy [1]`` float64 (eV), ``forces [N, 3]``
(eV/Å), and with ``stress`` among the outputs ``stress [1, 3, 3]`` (eV/Å^3, ASE sign), for which
the cell must have a non-zero volume (for a molecule any cell does: no edge crosses it; this
loader passes the identity). The neighbour list is the caller's (see
:class:`~molequi.calculators.neighbor_cache.SkinNeighborList`).

Metadata (``get_metadata()``, all text): ``molequi_package_format``, ``model``, ``r_max``,
``species`` (atomic numbers, space-separated), ``dtype``, ``inputs``, ``outputs``, ``config``,
``units`` and ``versions`` (JSON), ``max_error`` (the deploy-time check, JSON), ``device``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

SUFFIX = ".pt2"


def is_package(path: Any) -> bool:
    """Whether ``path`` names a deployed package (a path ending in ``.pt2``)."""
    return isinstance(path, (str, os.PathLike)) and Path(path).suffix == SUFFIX


def _release(version: str) -> tuple[str, ...]:
    """``"2.13.0+cpu"`` -> ``("2", "13")``."""
    return tuple(version.split("+")[0].split(".")[:2])


class PackagedPotential:
    """A deployed package called like a model: ``potential(data, compute_forces=True, compute_stress=False)``.

    Args:
        path: the ``.pt2`` file.
        device: where to run it: ``cpu`` for a CPU package, ``cuda[:k]`` for a CUDA one.
        dtype: the precision wanted (None: the package's); a package computes in the dtype it
            was deployed with only.

    Attributes:
        r_max: cutoff (Å); species: atomic numbers; dtype: the model's dtype; stress: whether the
        package computes stress; metadata: the package's text metadata; config: ``{"species", "r_max"}``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a molequi package, written by another torch release, compiled for
            another kind of device, or ``dtype`` other than the package's.
    """

    def __init__(
        self, path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"package not found: {path}")
        device = torch.device(device)
        try:
            index = device.index if device.index is not None else -1
            runner = torch._inductor.aoti_load_package(str(path), device_index=index)
        except Exception as error:  # torch raises RuntimeError or zip errors for foreign or corrupt files
            raise ValueError(f"{path}: not a loadable AOTInductor package ({type(error).__name__}: {error})") from error
        metadata = dict(runner.get_metadata())
        if "molequi_package_format" not in metadata:
            raise ValueError(f"{path}: an AOTInductor package, but not one of molequi deploy (no molequi metadata)")
        written_with = json.loads(metadata["versions"])["torch"]
        if _release(written_with) != _release(torch.__version__):
            raise ValueError(
                f"{path}: written with torch {written_with}, this is torch {torch.__version__}; AOTInductor packages "
                "run only on the torch release that compiled them: deploy the model file again with this torch"
            )
        compiled_for = metadata.get("AOTI_DEVICE_KEY", metadata.get("device", "cpu"))
        if compiled_for != device.type:
            raise ValueError(
                f"{path}: compiled for {compiled_for}, cannot run on {device}; deploy with --device {device.type}"
            )
        self.path, self.device, self.metadata, self._runner = path, device, metadata, runner
        self.r_max = float(metadata["r_max"])
        self.species = [int(z) for z in metadata["species"].split()]
        self.dtype = getattr(torch, metadata["dtype"])
        self.stress = "stress" in metadata["outputs"].split()
        self.config = {"species": self.species, "r_max": self.r_max}
        if dtype is not None and dtype != self.dtype:
            raise ValueError(f"{path}: the package computes in {self.dtype}, not {dtype}; deploy the model in {dtype}")

    def __call__(
        self, data: Mapping[str, torch.Tensor] | Any, compute_forces: bool = True, compute_stress: bool = False
    ) -> dict[str, torch.Tensor]:
        """``energy [1]`` and ``forces [N, 3]`` (and ``stress [1, 3, 3]``) of one structure.

        Args:
            data: a dict (or PyG ``Data``) with ``z [N]``, ``pos [N, 3]``, ``edge_index [2, E]`` and
                optionally ``edge_shift [E, 3]``, ``cell [1, 3, 3]`` (default zeros).
            compute_forces: accepted for the model's call shape; forces are always computed.
            compute_stress: also return the stress (needs a package deployed with stress and a
                cell of non-zero volume).

        Raises:
            ValueError: a missing input, more than one structure, fewer than 2 atoms or 2 edges,
                positions in another dtype, or stress asked of a package without it or of a
                cell without volume.
        """
        if compute_stress and not self.stress:
            raise ValueError(f"{self.path.name} was deployed without stress (molequi deploy without --no-stress)")
        tensors = package_inputs(data, self.dtype, self.stress, compute_stress)
        outputs = self._runner(*tensors)
        names = self.metadata["outputs"].split()
        out = dict(zip(names, outputs))
        if not compute_stress:
            out.pop("stress", None)
        return out


def load_package(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> PackagedPotential:
    """Load a deployed package (see :class:`PackagedPotential` and the module docstring)."""
    return PackagedPotential(path, device, dtype)


def package_inputs(
    data: Mapping[str, torch.Tensor] | Any, dtype: torch.dtype, stress: bool, compute_stress: bool = False
) -> tuple[torch.Tensor, ...]:
    """The package's inputs ``(pos, z, edge_index, edge_shift, cell [1, 3, 3], batch)`` of one structure.

    Args:
        data: ``z, pos, edge_index`` and optionally ``edge_shift``, ``cell`` (see :class:`PackagedPotential`).
        dtype: the package's float dtype.
        stress: the package computes stress, so the cell needs a volume (:func:`cell_with_volume`).
        compute_stress: the stress is wanted (a cell without volume is then an error).

    Raises:
        ValueError: as :meth:`PackagedPotential.__call__`.
    """
    z, pos, edge_index = (_get(data, key) for key in ("z", "pos", "edge_index"))
    if z is None or pos is None or edge_index is None:
        raise ValueError("a package needs 'z' [N], 'pos' [N, 3] and 'edge_index' [2, E] (it builds no neighbour list)")
    if pos.dtype != dtype:
        raise ValueError(f"positions are {pos.dtype}, the package computes in {dtype}")
    num_atoms, num_edges = pos.shape[0], edge_index.shape[1]
    if num_atoms < 2 or num_edges < 2:
        raise ValueError(
            f"a package evaluates structures of at least 2 atoms and 2 edges; this one has {num_atoms} atoms "
            f"and {num_edges} edges (use the model file)"
        )
    edge_shift = _get(data, "edge_shift")
    edge_shift = pos.new_zeros(num_edges, 3) if edge_shift is None else edge_shift.to(dtype)
    cell = _get(data, "cell")
    cell = pos.new_zeros(1, 3, 3) if cell is None else cell.to(dtype)
    if cell.numel() != 9:
        raise ValueError(f"a package evaluates one structure: 'cell' must be [1, 3, 3], got {list(cell.shape)}")
    cell = cell_with_volume(cell.reshape(1, 3, 3), compute_stress) if stress else cell.reshape(1, 3, 3)
    batch = torch.zeros(num_atoms, dtype=torch.long, device=pos.device)
    return pos, z.to(torch.long), edge_index, edge_shift, cell, batch


def _get(data: Any, key: str) -> Any:
    if isinstance(data, Mapping):
        return data.get(key)
    return data[key] if key in data else None


def cell_with_volume(cell: torch.Tensor, compute_stress: bool) -> torch.Tensor:
    """``cell [1, 3, 3]``, or where it has no volume, its zero rows replaced by unit vectors orthogonal to the others.

    Without volume no edge crosses the missing directions (their shifts are 0), so energy and
    forces do not depend on them; the stress graph only needs the volume to be non-zero.

    Raises:
        ValueError: ``compute_stress`` for a cell without volume, or lattice vectors that are
            linearly dependent.
    """
    matrix = cell[0].to(torch.float64)
    if bool(torch.linalg.det(matrix) != 0):
        return cell
    if compute_stress:
        raise ValueError("stress needs a periodic cell with non-zero volume")
    present = matrix.norm(dim=1) > 0
    rows = matrix[present]
    completed = matrix.clone()
    if rows.shape[0]:
        completed[~present] = torch.linalg.svd(rows, full_matrices=True).Vh[rows.shape[0] :]
    else:
        completed = torch.eye(3, dtype=torch.float64, device=cell.device)
    if not bool(torch.linalg.det(completed) != 0):
        raise ValueError(f"the cell's lattice vectors are linearly dependent: {matrix.tolist()}")
    return completed.to(cell.dtype).reshape(1, 3, 3)
