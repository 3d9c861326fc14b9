"""torch.compile of a potential (inference): one graph, dynamic sizes, the eager model's numbers.

Tracing and compiling take over a minute even with the eager backend on a loaded 2-core machine,
so the graph tests are slow ones; tests/deploy/test_export.py exports the same graph by default.
"""

from __future__ import annotations

import pytest
import torch
from deploy_systems import inputs

from molequi.deploy import compile_potential


def _max_errors(out: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float((out[name] - reference[name].detach()).abs().max()) for name in out}


@pytest.mark.slow
def test_one_graph_serves_molecules_of_two_sizes(tiny_model):
    """Graph capture (fullgraph, dynamic) and the numbers; the eager backend skips inductor's code generation."""
    compiled = compile_potential(tiny_model, backend="eager")
    small, large = inputs("CH3CH2OH"), inputs("C6H6")
    assert small["pos"].shape[0] != large["pos"].shape[0]
    out_small = compiled(small)
    with torch.compiler.set_stance("fail_on_recompile"):  # the second size runs the same graph
        out_large = compiled(large)
    assert len(compiled.compile_seconds) == 1
    for data, out in ((small, out_small), (large, out_large)):
        assert set(out) == {"energy", "forces"}
        errors = _max_errors(out, tiny_model(data))
        assert max(errors.values()) <= 1e-10, errors


def test_the_callers_model_is_left_as_it_was(tiny_model):
    tiny_model.train()
    try:
        compiled = compile_potential(tiny_model, backend="eager")
        assert tiny_model.training and all(p.requires_grad for p in tiny_model.parameters())
        assert not any(p.requires_grad for p in compiled.parameters())
    finally:
        tiny_model.eval()


@pytest.mark.slow
def test_inductor_graph_with_stress_equals_eager(tiny_model, capsys):
    """The real thing: inductor's C++ code for energy, forces and stress (minutes on a CPU)."""
    compiled = compile_potential(tiny_model)
    for name in ("box", "CH3CH2OH", "C6H6"):
        data = inputs(name)
        stress = name == "box"
        out = compiled(data, compute_stress=stress)
        errors = _max_errors(out, tiny_model(data, compute_stress=stress))
        assert max(errors.values()) <= 1e-10, (name, errors)
    assert len(compiled.compile_seconds) == 2  # one graph with stress, one without
    with capsys.disabled():
        print(f"\ninductor compile times (s): {[round(s, 1) for s in compiled.compile_seconds.values()]}")
