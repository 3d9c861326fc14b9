"""Read a PyG ``Batch`` / ``Data`` or a plain dict into the tensors a model needs, building edges if absent.

The checks here look at shapes, dtypes and the recorded cutoff, never at tensor values, so that a
model's ``forward`` makes no host-device synchronisation (which ``torch.compile`` also needs). The
values (known elements, finite coordinates, no overlapping atoms) are validated once, where data
enters: :func:`molequi.data.structures_to_graphs` (hence every dataset) and the ASE calculator.
Only the convenience path for inputs without ``edge_index`` reads values: it builds the edges with
:func:`molequi.data.neighbor_list`, which rejects NaN or infinite positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch_geometric.data import Batch

from ..data import keys


@dataclass
class GraphInputs:
    """The model-facing view of a batch of graphs.

    Attributes:
        z: ``[N]`` atomic numbers.
        pos: ``[N, 3]`` positions (Å).
        batch: ``[N]`` graph of each atom.
        num_graphs: number of graphs ``G``.
        edge_index: ``[2, E]`` (row 0 source j, row 1 target i).
        edge_shift: ``[E, 3]`` integer cell shifts (float dtype).
        cell: ``[G, 3, 3]`` lattice vectors as rows (zeros where non-periodic).
        pbc: ``[G, 3]`` bool.
        fragment_index: ``[N]`` fragment label of each atom (:data:`~molequi.data.keys.FRAGMENT_INDEX`),
            or None when the input has none.
        edges_built: the input had no ``edge_index`` and the neighbour list was built here (raw
            input, not a graph from a dataset or calculator, whose values are validated there).
    """

    z: torch.Tensor
    pos: torch.Tensor
    batch: torch.Tensor
    num_graphs: int
    edge_index: torch.Tensor
    edge_shift: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    fragment_index: torch.Tensor | None = None
    edges_built: bool = False


def _get(data: Any, key: str) -> Any:
    if isinstance(data, Mapping):
        return data.get(key)
    return getattr(data, key, None) if key in data else None


def read_graph_inputs(data: Any, r_max: float, dtype: torch.dtype | None = None) -> GraphInputs:
    """Collect the model inputs from ``data`` (PyG ``Data``/``Batch`` or a dict with the same keys).

    Edges within ``r_max`` are built with :func:`molequi.data.neighbor_list` when ``edge_index``
    is absent. The number of graphs is ``Batch.num_graphs``, 1 without ``batch``, else the rows
    of ``cell``; only a dict with ``batch`` but no ``cell`` is counted from ``batch`` (a sync).

    Graphs that record their cutoff (:data:`~molequi.data.keys.R_MAX`) must have been built
    with at least ``r_max``: a shorter one lacks edges the model needs and is refused. A longer
    one is accepted: molequi's models multiply every edge term by a cutoff envelope that is
    exactly zero from ``r_max`` on, so the extra edges change nothing but the cost.

    Args:
        data: the input (see :mod:`molequi.data.keys` for names and shapes).
        r_max: the model's cutoff (Å).
        dtype: the model's float dtype; positions of another dtype are refused (None: any).

    Raises:
        ValueError: naming the argument and what it needs, for a missing or wrongly shaped or
            typed ``z``, ``pos``, ``batch``, ``cell``, ``pbc``, ``edge_index``, ``edge_shift``
            or ``fragment_index``, positions in another dtype than the model's, or graphs built
            with a shorter cutoff than ``r_max``.
    """
    z, pos = _get(data, keys.ATOMIC_NUMBERS), _get(data, keys.POSITIONS)
    if z is None or pos is None:
        raise ValueError("model input needs atomic numbers 'z' [N] and positions 'pos' [N, 3]")
    _require(pos, "pos", "a float tensor [N, 3]", lambda t: t.ndim == 2 and t.shape[1] == 3 and t.is_floating_point())
    n = pos.shape[0]
    _require(z, "z", f"an integer tensor [N] = [{n}] (one atomic number per row of 'pos')", _integer_vector(n))
    if dtype is not None and pos.dtype != dtype:
        raise ValueError(
            f"model input: positions are {pos.dtype} but the model is {dtype}; build the graphs in the "
            f"model's dtype (e.g. ASEDataset(..., dtype={dtype}) or structures_to_graphs(..., dtype={dtype})) "
            f"or convert the model with model.to({pos.dtype})"
        )
    recorded = _get(data, keys.R_MAX)
    if recorded is not None:
        _check_cutoff(recorded, r_max)
    batch = _get(data, keys.BATCH)
    if batch is None:
        batch = torch.zeros_like(z, dtype=torch.long)
    else:
        _require(batch, "batch", f"an int64 tensor [N] = [{n}]", lambda t: t.shape == (n,) and t.dtype == torch.long)
    cell, pbc = _get(data, keys.CELL), _get(data, keys.PBC)
    g = _num_graphs(data, batch, cell)
    if cell is None:
        cell = pos.new_zeros(g, 3, 3)
    needs = f"a float tensor [G, 3, 3] = [{g}, 3, 3]"
    _require(cell, "cell", needs, lambda t: t.numel() == 9 * g and t.is_floating_point())
    if pbc is None:
        pbc = torch.zeros(g, 3, dtype=torch.bool, device=pos.device)
    _require(pbc, "pbc", f"a bool tensor [G, 3] = [{g}, 3]", lambda t: t.numel() == 3 * g and t.dtype == torch.bool)
    cell, pbc = cell.reshape(g, 3, 3).to(pos.dtype), pbc.reshape(g, 3)
    edge_index, edge_shift = _get(data, keys.EDGE_INDEX), _get(data, keys.EDGE_SHIFT)
    edges_built = edge_index is None
    if edges_built:
        from ..data import neighbor_list

        edge_index, edge_shift = neighbor_list(pos.detach(), r_max, cell=cell, pbc=pbc, batch=batch)
    needs = "an int64 tensor [2, E]"
    _require(edge_index, "edge_index", needs, lambda t: t.ndim == 2 and t.shape[0] == 2 and t.dtype == torch.long)
    e = edge_index.shape[1]
    if edge_shift is None:
        edge_shift = pos.new_zeros(e, 3)
    needs = f"a tensor [E, 3] = [{e}, 3] (one cell shift per edge)"
    _require(edge_shift, "edge_shift", needs, lambda t: t.shape == (e, 3))
    fragment_index = _get(data, keys.FRAGMENT_INDEX)
    if fragment_index is not None:
        _require(fragment_index, "fragment_index", f"an integer tensor [N] = [{n}]", _integer_vector(n))
    return GraphInputs(z, pos, batch, g, edge_index, edge_shift.to(pos.dtype), cell, pbc, fragment_index, edges_built)


def _integer_vector(n: int) -> Callable[[torch.Tensor], bool]:
    """Test for an ``[n]`` tensor of an integer dtype."""
    return lambda t: t.shape == (n,) and not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def _require(value: Any, name: str, needs: str, test: Callable[[torch.Tensor], bool]) -> None:
    """Raise unless ``value`` is a tensor passing ``test``; the message says what ``name`` needs and what it got."""
    if isinstance(value, torch.Tensor) and test(value):
        return
    is_tensor = isinstance(value, torch.Tensor)
    got = f"{value.dtype} tensor of shape {list(value.shape)}" if is_tensor else type(value).__name__
    raise ValueError(f"model input: '{name}' must be {needs}, got a {got}")


def _num_graphs(data: Any, batch: torch.Tensor, cell: torch.Tensor | None) -> int:
    """``G`` without reading tensor values where the input says it (see :func:`read_graph_inputs`)."""
    if isinstance(data, Batch):
        return data.num_graphs
    if _get(data, keys.BATCH) is None:
        return 1
    if isinstance(cell, torch.Tensor):
        return cell.numel() // 9
    return int(batch.max()) + 1 if batch.numel() else 1


def _check_cutoff(recorded: Any, r_max: float) -> None:
    """Refuse graphs whose recorded cutoff is below ``r_max``.

    ``recorded`` is the text of one graph's cutoff, or a list of them for a ``Batch``; a number
    or a tensor of numbers (read with a sync) is accepted too.
    """
    if isinstance(recorded, torch.Tensor):
        recorded = recorded.reshape(-1).tolist()
    values = recorded if isinstance(recorded, Sequence) and not isinstance(recorded, str) else [recorded]
    shortest = min(float(v) for v in values) if len(values) else r_max
    if shortest < r_max:
        raise ValueError(
            f"the graphs were built with cutoff r_max={shortest:g} A but the model's r_max is {r_max:g} A: "
            f"edges between {shortest:g} and {r_max:g} A are missing; rebuild the graphs at the model's "
            "cutoff (e.g. ASEDataset(..., r_max=model.r_max) or atoms_to_graph(atoms, model.r_max))"
        )
