"""molequi side of ``benchmarks/model_speed.py``: time one case of ``EquivariantPotential``.

Run with molequi's python (the driver does this)::

    python benchmarks/peers/molequi_worker.py --structures aspirin32.extxyz --dtype float32 --task forces

``--config`` takes ``EquivariantPotential`` options as JSON, plus ``"model"``: ``"EquivariantPotential"``
(default) or ``"NBodyNetwork"`` (when ``molequi.models`` has it) and ``"compile": true`` to time
``torch.compile`` of the convolutions' fused edge kernels (inference only), and
``"path"``: ``"kernel"`` (default: the fused C++ kernel where it builds), ``"pytorch"`` (fused PyTorch
operations) or ``"e3nn"`` (the reference: PyG propagate with e3nn's TensorProduct), to time the
convolution paths against each other. ``--profile N`` prints torch.profiler's N most expensive
operators for one call (on stderr) after the timing.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402

#: Options per model class (anything else is the class's own default).
DEFAULTS = {
    "EquivariantPotential": {
        "r_max": 5.0,
        "num_layers": 3,
        "hidden_irreps": "32x0e+32x1o+32x2e",
        "lmax": 2,
        "num_radial": 8,
        "radial_hidden": [64, 64],
        "avg_num_neighbors": 10.0,
    },
    "NBodyNetwork": {"r_max": 5.0, "avg_num_neighbors": 10.0},
}


def main() -> None:
    parser = _harness.common_arguments(__doc__)
    parser.add_argument("--profile", type=int, default=0, help="print the N most expensive operators of one call")
    args = parser.parse_args()
    _harness.setup(args)
    import ase.io
    import torch
    from torch_geometric.data import Batch

    import molequi
    import molequi.models
    from molequi.data import structure_from_atoms, structures_to_graphs

    options = json.loads(args.config)
    model_name = options.pop("model", "EquivariantPotential")
    config = {**DEFAULTS.get(model_name, {}), **options}
    use_compile = bool(config.pop("compile", False))
    path = config.pop("path", "pytorch" if use_compile else "kernel")
    frames = ase.io.read(args.structures, ":")
    species = sorted({int(z) for atoms in frames for z in atoms.numbers})
    if model_name == "NBodyNetwork" and any(atoms.pbc.any() for atoms in frames):
        config.setdefault("hierarchy", False)  # its fragment hierarchy is for molecules only
    if not hasattr(molequi.models, model_name):
        _harness.emit({"side": "molequi", "skipped": f"molequi.models has no {model_name}"})
        return
    model = getattr(molequi.models, model_name)(species, **config)
    model.train(args.task == "train")
    for module in model.modules():  # the convolution path (see the module docstring)
        if hasattr(module, "backend"):
            module.backend = {"e3nn": "reference", "pytorch": "torch", "kernel": "cpp"}[path]
    r_max = float(model.r_max)

    def build_batch():
        structures = [structure_from_atoms(atoms, where=f"frame {i}") for i, atoms in enumerate(frames)]
        return Batch.from_data_list(structures_to_graphs(structures, r_max))

    graph_ms = _harness.median_time(build_batch)
    batch = build_batch()
    num_atoms, num_edges = int(batch.num_nodes), int(batch.edge_index.shape[1])

    if use_compile:
        for module in model.modules():
            if hasattr(module, "layout"):  # EquivariantConv's "torch" backend
                module.layout.torch_aggregate = torch.compile(module.layout.torch_aggregate, dynamic=True)

    def predict(training: bool):
        out = model(batch)
        return out["energy"], out["forces"]

    call = _harness.timed_call(args.task, model, predict, frames, num_atoms)
    _harness.report(
        call, args, model, graph_ms, num_atoms, num_edges,
        side="molequi",
        model=model_name + (" (torch.compile)" if use_compile else "") + ("" if path == "kernel" else f" ({path})"),
        version=molequi.__version__,
        config={**config, "model": model_name, "compile": use_compile, "path": path},
    )
    if args.profile:
        from torch.profiler import profile

        with profile() as prof:
            call()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile, max_name_column_width=50)
        print(table, file=sys.stderr)


if __name__ == "__main__":
    main()
