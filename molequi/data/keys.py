"""Attribute names of a molequi graph (a :class:`torch_geometric.data.Data`).

Every module reads and writes graphs through these constants, so the convention is
written down exactly once:

=================  ===========  ===========================================================
key                shape        meaning
=================  ===========  ===========================================================
``z``              [N] long     atomic numbers
``pos``            [N, 3]       Cartesian positions, Angstrom, default float dtype
``edge_index``     [2, E] long  PyG order: row 0 = source j, row 1 = target (centre) i
``edge_shift``     [E, 3]       integer cell shifts, stored in the float dtype of ``pos``:
                                ``pos[j] - pos[i] + edge_shift @ cell`` is the vector from
                                i to the image of j
``cell``           [1, 3, 3]    lattice vectors as rows, Angstrom (zeros if non-periodic)
``pbc``            [1, 3] bool  periodicity per lattice direction
``energy``         [1] float64  total energy, eV (float64 whatever the model dtype)
``forces``         [N, 3]       eV / Angstrom
``stress``         [1, 3, 3]    eV / Angstrom^3, ASE sign convention, float64
``dipole_norm``    [1]          norm of the molecular dipole, Debye (QM9's ``mu``)
``intensive``      [1]          a size-intensive molecular invariant (QM9's gap, HOMO, LUMO; eV)
``batch``          [N] long     graph of each atom (set by PyG ``Batch``)
``r_max``          str          cutoff (Angstrom) the edges were built with, as text (e.g.
                                ``"5.0"``) so that it stays a Python value through PyG
                                collation and ``.to(device)`` (a float would become a
                                tensor); a ``Batch`` holds a list, one per graph. A model
                                refuses graphs built with a shorter cutoff than its own
``fragment_index`` [N] long     optional fragment label of each atom (equal within a
                                fragment), read by :class:`~molequi.models.nbody.NBodyNetwork`;
                                offset per graph on collation like every ``index`` key
``has_<target>``   [1] bool     only in datasets read with ``fill_missing=True`` where some
                                frames lack ``<target>``: False where the target is a
                                zero placeholder, which the loss and metrics leave out
=================  ===========  ===========================================================

Per-graph tensors carry a leading axis of length 1 so that PyG ``Batch`` concatenates
them into one row per graph. Only true index tensors have ``index`` in their name,
because PyG offsets those on collation.
"""

ATOMIC_NUMBERS = "z"
POSITIONS = "pos"
EDGE_INDEX = "edge_index"
EDGE_SHIFT = "edge_shift"
CELL = "cell"
PBC = "pbc"
ENERGY = "energy"
FORCES = "forces"
STRESS = "stress"
DIPOLE_NORM = "dipole_norm"
INTENSIVE = "intensive"
BATCH = "batch"
R_MAX = "r_max"
FRAGMENT_INDEX = "fragment_index"

#: Targets stored in float64 whatever the model dtype (see :mod:`molequi.models.energy_head`).
FLOAT64_TARGETS = (ENERGY, STRESS)


def availability_key(target: str) -> str:
    """Name of the per-graph flag telling whether ``target`` is real (``has_<target>``)."""
    return f"has_{target}"
