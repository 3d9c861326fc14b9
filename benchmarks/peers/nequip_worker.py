"""NequIP side of ``benchmarks/model_speed.py``: time one case of an untrained ``NequIPGNNModel``.

Run with the python of a venv that has nequip (never molequi's)::

    python3 -m venv /work/venv-nequip && /work/venv-nequip/bin/pip install torch==2.13.0 nequip
    /work/venv-nequip/bin/python benchmarks/peers/nequip_worker.py --structures aspirin32.extxyz --dtype float32

The model is ``nequip.model.NequIPGNNModel`` with its own defaults (4 layers, ``l_max`` 1, parity,
32 features, one radial layer of width 128) in eager mode; ``--config`` (JSON) overrides
:data:`DEFAULTS`. Graphs come from NequIP's pipeline (``from_ase`` -> ``compute_neighborlist_`` with
its default backend -> ``ChemicalSpeciesToAtomTypeMapper`` -> ``batched_from_list``). Note that
NequIP's default model always differentiates with respect to a cell strain too (it returns a
virial), so its "energy + forces" call does slightly more work than the others'.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402

DEFAULTS = {
    "r_max": 5.0,
    "num_layers": 4,
    "l_max": 1,
    "parity": True,
    "num_features": 32,
    "radial_mlp_depth": 1,
    "radial_mlp_width": 128,
    "num_bessels": 8,
    "polynomial_cutoff_p": 6,
    "avg_num_neighbors": 10.0,
}


def main() -> None:
    args = _harness.common_arguments(__doc__).parse_args()
    _harness.setup(args)
    warnings.filterwarnings("ignore", module="nequip")
    import ase.data
    import ase.io
    import nequip
    import torch
    from nequip.utils.global_state import set_global_state

    set_global_state()
    torch.set_default_dtype(getattr(torch, args.dtype))  # set_global_state may reset it
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from nequip.data import AtomicDataDict, compute_neighborlist_, from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper
    from nequip.model import NequIPGNNModel

    config = {**DEFAULTS, **json.loads(args.config)}
    frames = ase.io.read(args.structures, ":")
    type_names = [ase.data.chemical_symbols[z] for z in sorted({int(z) for a in frames for z in a.numbers})]
    model = NequIPGNNModel(
        seed=args.seed,
        model_dtype=args.dtype,
        type_names=type_names,
        per_type_energy_scales=1.0,
        per_type_energy_shifts=0.0,
        **config,
    )
    model.train(args.task == "train")
    mapper = ChemicalSpeciesToAtomTypeMapper(model_type_names=type_names)

    def build_batch():
        graphs = [mapper(compute_neighborlist_(from_ase(atoms), config["r_max"])) for atoms in frames]
        batch = AtomicDataDict.batched_from_list(graphs)
        for key in ("forces", "total_energy"):  # labels are not inputs
            batch.pop(key, None)
        return {k: v.to(torch.get_default_dtype()) if v.is_floating_point() else v for k, v in batch.items()}

    graph_ms = _harness.median_time(build_batch)
    batch = build_batch()
    num_atoms, num_edges = int(batch["pos"].shape[0]), int(batch["edge_index"].shape[1])

    def predict(training: bool):
        out = model(dict(batch))
        return out["total_energy"], out["forces"]

    call = _harness.timed_call(args.task, model, predict, frames, num_atoms)
    _harness.report(
        call, args, model, graph_ms, num_atoms, num_edges,
        side="nequip", model="NequIP (NequIPGNNModel)", version=nequip.__version__, config=config,
    )  # fmt: skip


if __name__ == "__main__":
    main()
