"""The ASE calculator: ``atoms.calc = MolequiCalculator("model.pt")``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from ..deploy.runtime import PackagedPotential, is_package, load_package
from ..devices import resolve_device
from .batched import predict
from .checks import check_atoms, check_edge_lengths
from .inference import ModelLike, evaluate, known_elements, prepare_models, resolve_dtype, structure_results
from .neighbor_cache import SkinNeighborList


class MolequiCalculator(Calculator):
    """ASE calculator for molequi models (one model, or a committee of several).

    Energies in eV, forces in eV/Å, stress in eV/Å^3 (ASE sign and Voigt order) for fully
    periodic cells. Work is re-used between calls: the models are moved to ``device`` and
    ``dtype`` once (eval mode, frozen parameters), and the neighbour list is searched within
    ``r_max + skin`` and only rebuilt when an atom has moved more than ``skin / 2``, or when
    the cell, periodicity or number of atoms changes (see
    :class:`~molequi.calculators.neighbor_cache.SkinNeighborList`); the forces are exactly those
    of a fresh neighbour list.

    With several models the results are the committee mean, plus the spread (standard
    deviation, ``ddof=0``) as ``energy_std``, ``forces_std [N, 3]`` and ``stress_std [6]``.

    Stress is computed when asked for; once it has been asked for, every later calculation
    computes it too, so that drivers that ask for forces and stress separately (NPT) pay one
    model call per step.

    An :class:`~molequi.models.NBodyNetwork` decomposes a structure into fragments from its bond
    graph; the calculator freezes that decomposition at the first call (and keeps it while the
    atomic numbers stay the same), so that the energy stays continuous in MD when a bond to a
    hydrogen stretches past the bond cutoff. ``reset_fragments()`` forgets it.

    Args:
        model: a model file path, a loaded model, or a sequence of them (a committee; the
            members must share ``r_max``). Given models are copied, not modified. A ``.pt2``
            path is a deployed package (``molequi deploy``; one structure per call, in the
            dtype it was deployed with; see :mod:`molequi.deploy.runtime`).
        device: torch device of the models.
        dtype: ``"float32"``, ``"float64"`` or a ``torch.dtype`` (default: the model's).
        skin: neighbour-list skin (Å); 0 rebuilds at every call.
        **kwargs: passed to :class:`ase.calculators.calculator.Calculator`.

    Raises:
        ValueError (at calculation): an empty ``Atoms``, an element a model was not trained on,
            NaN/inf positions or cell, or two atoms closer than 0.1 Å.

    Example:
        >>> atoms.calc = MolequiCalculator("model.pt")
        >>> ase.optimize.BFGS(atoms).run(fmax=0.01)
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self,
        model: ModelLike | Sequence[ModelLike],
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
        skin: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.device = resolve_device(device)
        if is_package(model):  # a deployed package (molequi deploy): same call shape as a model
            self.models = [load_package(model, self.device, resolve_dtype(dtype))]
            self.dtype = self.models[0].dtype
        else:
            self.models = prepare_models(model, self.device, dtype)
            self.dtype = next(self.models[0].parameters()).dtype
        self.r_max = self.models[0].r_max
        self.elements = known_elements(self.models)
        self.neighbors = SkinNeighborList(self.r_max, skin)
        self._stress_requested = False
        self._fragments: tuple[np.ndarray, torch.Tensor] | None = None
        if len(self.models) > 1:
            self.implemented_properties = [*self.implemented_properties, "energy_std", "forces_std", "stress_std"]

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """Evaluate ``atoms``; stores the results in ``self.results`` (stress only for periodic cells)."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        check_atoms(atoms, self.elements, "atoms")
        periodic = bool(atoms.pbc.all())
        self._stress_requested |= "stress" in properties or "stress_std" in properties
        data = self._graph(atoms)
        if self._fragments is not None and not np.array_equal(self._fragments[0], atoms.numbers):
            self._fragments = None  # another structure: a new decomposition
        if self._fragments is not None:
            data["fragment_index"] = self._fragments[1]
        out = evaluate(self.models, data, compute_stress=periodic and self._stress_requested)
        fragments = out.pop("fragment_index", None)
        if self._fragments is None and fragments is not None:
            self._fragments = (atoms.numbers.copy(), fragments)
        out = {name: value.cpu().numpy() for name, value in out.items()}
        stress = out["stress"][:, 0] if "stress" in out else None
        self.results = structure_results(out["energy"][:, 0], out["forces"], stress)

    def reset_fragments(self) -> None:
        """Forget the frozen N-body fragments: the next call decomposes the structure afresh."""
        self._fragments = None

    def predict(self, structures: Sequence[Atoms], batch_size: int = 32) -> list[dict[str, Any]]:
        """Batched evaluation of many structures (see :func:`molequi.calculators.batched.predict`).

        Returns:
            One dict per structure, with the same keys and values as ``self.results`` after
            calculating that structure alone: ``energy``, ``free_energy``, ``forces [N, 3]``,
            ``stress [6]`` for fully periodic cells, and the ``*_std`` spreads for a committee.

        Raises:
            ValueError: the calculator runs a deployed package (one structure per call).
        """
        if isinstance(self.models[0], PackagedPotential):
            raise ValueError(f"predict batches model files; the package {self.models[0].path} evaluates one structure per call")
        return predict(self.models, structures, batch_size, self.device)

    def _graph(self, atoms: Atoms) -> dict[str, torch.Tensor]:
        """Model input of ``atoms``: ``z [N]``, ``pos [N, 3]``, edges, ``cell [1, 3, 3]``, ``pbc [1, 3]``."""
        pos64 = torch.from_numpy(np.ascontiguousarray(atoms.positions, dtype=np.float64)).to(self.device)
        pbc = torch.from_numpy(np.asarray(atoms.pbc, dtype=bool)).to(self.device)
        cell64 = (
            torch.from_numpy(atoms.cell.array.astype(np.float64))
            if pbc.any()
            else torch.zeros(3, 3, dtype=torch.float64)
        )
        cell64 = cell64.to(self.device)
        edges = self.neighbors.update(pos64, cell64, pbc)
        check_edge_lengths(edges.length, edges.edge_index, "atoms")
        return {
            "z": torch.from_numpy(atoms.numbers.astype(np.int64)).to(self.device),
            "pos": pos64.to(self.dtype),
            "edge_index": edges.edge_index,
            "edge_shift": edges.edge_shift.to(self.dtype),
            "cell": cell64.to(self.dtype).reshape(1, 3, 3),
            "pbc": pbc.reshape(1, 3),
        }
