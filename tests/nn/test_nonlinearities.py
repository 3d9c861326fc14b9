"""Contract tests every nonlinearity family passes: interface, O(3) commutation, gradients, errors."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from molequi.nn import nonlinearities
from molequi.testing import TOLERANCES, assert_equivariant, equivariance_error

# (family, irreps_out, options) for which the family is exact
EXACT_CASES = [
    ("scalar", "8x0e+4x0o", {}),
    ("scalar", "8x0e+4x0o", {"act": "relu", "act_odd": "abs"}),
    ("norm", "4x0e+2x0o+4x1o+3x1e+2x2e+2x3o", {}),
    ("gate", "4x0e+2x0o+4x1o+3x1e+2x2e+2x3o", {}),
    ("gate", "3x2e+4x1o+5x0e", {"act_gates": "tanh"}),
    ("tensor_product", "4x0e+4x1o+4x2e", {}),
    ("tensor_product", "6x0e+2x0o+3x1o+3x1e+2x2e", {}),
    ("fourier", "4x0e+4x1o+4x2e", {"act": lambda x: x * x + x, "degree": 2}),
    ("fourier", "3x0e+3x1o+3x2e+3x3o", {"act": lambda x: x**3 - x, "degree": 3}),
    ("fourier", "5x0e", {}),
]


def _ids(case):
    return f"{case[0]}-{case[1]}-{sorted(case[2])}"


@pytest.mark.parametrize("case", EXACT_CASES, ids=_ids)
def test_exact_family_commutes_with_o3(case, dtype):
    name, irreps, options = case
    act = nonlinearities.build(name, irreps, **options)
    assert act.exact
    assert_equivariant(act, tolerance=TOLERANCES[dtype], num_transformations=6)


@pytest.mark.parametrize("name", sorted(nonlinearities.FAMILIES))
def test_interface_and_defaults(name, float64):
    irreps = "6x0e" if name == "scalar" else "4x0e+4x1o+4x2e"
    act = nonlinearities.build(name, irreps)
    assert isinstance(act.irreps_in, o3.Irreps) and isinstance(act.irreps_out, o3.Irreps)
    assert act.irreps_out == o3.Irreps(irreps)
    features = act.irreps_in.randn(2, 5, -1)
    out = act(features)
    assert out.shape == (2, 5, act.irreps_out.dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(nonlinearities.FAMILIES))
def test_gradients_finite_at_zero(name, float64):
    irreps = "6x0e" if name == "scalar" else "4x0e+4x1o+4x2e"
    act = nonlinearities.build(name, irreps)
    features = torch.zeros(3, act.irreps_in.dim, requires_grad=True)
    act(features).sum().backward()
    assert torch.isfinite(features.grad).all()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in act.parameters())


def test_gate_input_layout_keeps_user_order(float64):
    act = nonlinearities.build("gate", "2x1o+3x0e+1x2e")
    assert act.irreps_in == o3.Irreps("2x1o+3x0e+1x2e+3x0e")
    assert act.irreps_out == o3.Irreps("2x1o+3x0e+1x2e")
    features = act.irreps_in.randn(4, -1)
    features[:, -3:] = -1e3  # gates closed: all l > 0 outputs vanish, scalars do not
    out = act(features)
    assert out[:, :6].abs().max() < 1e-10 and out[:, 9:].abs().max() < 1e-10
    assert out[:, 6:9].abs().min() > 0


def test_scalar_parity_rules(float64):
    even_on_odd = nonlinearities.build("scalar", "3x0o", act_odd="abs")
    assert even_on_odd.irreps_out == o3.Irreps("3x0e")
    with pytest.raises(ValueError, match="scalar.*0o.*neither"):
        nonlinearities.build("scalar", "3x0o", act_odd="silu")
    with pytest.raises(ValueError, match="scalar.*l > 0"):
        nonlinearities.build("scalar", "3x0e+1x1o")


def test_relu_on_vectors_is_caught_by_the_kit(float64):
    """The check must be able to fail: component-wise ReLU on a vector is not equivariant."""
    irreps = o3.Irreps("4x1o")
    error = equivariance_error(torch.relu, irreps, irreps)
    assert error > 1e-2
    with pytest.raises(AssertionError, match="equivariance error"):
        module = torch.nn.ReLU()
        assert_equivariant(module, irreps, irreps)


@pytest.mark.parametrize(
    "name, irreps, options, match",
    [
        ("fourier", "4x0e+2x1o", {}, "fourier.*same\\s+multiplicity"),
        ("fourier", "4x0e+4x1e", {}, "fourier.*parity"),
        ("fourier", "4x0e+4x1o", {"degree": 2}, "fourier.*polynomial"),
        ("tensor_product", "4x1o", {"irreps_in": "4x0e"}, "tensor_product.*1o"),
        ("gate", "", {}, "gate.*empty"),
        ("norm", "4x0e", {"act": "nope"}, "norm.*unknown activation"),
        ("norm", "4x0e", {"epsilon": 0.0}, "norm.*epsilon=0.0 must be positive"),
        ("gate", "4x0e", {"colour": "red"}, "gate.*bad options"),
        ("swish", "4x0e", {}, "unknown nonlinearity family"),
    ],
)
def test_unsupported_combinations_raise(name, irreps, options, match, float64):
    with pytest.raises(ValueError, match=match):
        nonlinearities.build(name, irreps, **options)


def test_fourier_non_polynomial_error_falls_with_resolution(float64):
    irreps = "4x0e+4x1o+4x2e"
    errors = []
    for resolution in (8, 24):
        act = nonlinearities.build("fourier", irreps, act="silu", resolution=resolution)
        assert not act.exact
        errors.append(equivariance_error(act, act.irreps_in, act.irreps_out, generator=torch.Generator().manual_seed(0)))
    print(f"fourier(silu) O(3) error: resolution 8 -> {errors[0]:.2e}, 24 -> {errors[1]:.2e}")
    assert errors[1] < errors[0] / 10


def test_fourier_identity_round_trip(float64):
    act = nonlinearities.build("fourier", "3x0e+3x1o+3x2e", act=lambda x: x, degree=1)
    features = act.irreps_in.randn(7, -1)
    scale = act.act(torch.ones(()))  # the activation is rescaled to unit second moment
    torch.testing.assert_close(act(features), scale * features, atol=1e-12, rtol=0)


def test_tensor_product_keeps_unit_variance_through_depth(float64):
    irreps = "16x0e+16x1o+16x2e"
    torch.manual_seed(0)
    layers = [nonlinearities.build("tensor_product", irreps) for _ in range(12)]
    features = o3.Irreps(irreps).randn(2000, -1)
    for layer in layers:
        with torch.no_grad():
            features = layer(features)
        second_moment = features.pow(2).mean().item()
        assert 0.5 < second_moment < 2.0, second_moment


@pytest.mark.parametrize("irreps", ["1x1o", "2x0e+1x2e"])
def test_norm_output_and_jacobian_are_continuous_at_zero_with_a_bias(irreps, float64):
    """With ``b != 0`` the output must vanish and the Jacobian stay bounded and converge as ``f -> 0``."""
    act = nonlinearities.build("norm", irreps)
    with torch.no_grad():
        act.bias.copy_(torch.linspace(0.5, -0.7, act.bias.numel()))
    direction = torch.randn(act.irreps_in.dim, generator=torch.Generator().manual_seed(0))
    direction = direction / direction.norm()

    def jacobian(f):
        return torch.autograd.functional.jacobian(act, f)

    at_zero = jacobian(torch.zeros_like(direction))
    assert at_zero.abs().max() > 0.1  # the bias makes the layer linear, not zero, near f = 0
    previous_error = float("inf")
    for size in (1e-2, 1e-4, 1e-6, 1e-9):
        f = size * direction
        out = act(f)
        assert (out - at_zero @ f).norm() <= size**2  # out = J(0) f + o(|f|): no jump at 0
        error = (jacobian(f) - at_zero).abs().max().item()
        assert error < max(previous_error, 1e-12)  # the Jacobian converges to its value at 0
        previous_error = error
    assert previous_error < 1e-12


@pytest.mark.parametrize("lmax", [1, 2, 3])
def test_fourier_default_grid_is_equivariant_to_1e_minus_6_with_silu(lmax, float64):
    irreps = "+".join(f"8x{l}{'eo'[l % 2]}" for l in range(lmax + 1))
    act = nonlinearities.build("fourier", irreps)
    assert not act.exact and act.act_name == "silu"
    errors = [
        equivariance_error(act, act.irreps_in, act.irreps_out, generator=torch.Generator().manual_seed(seed))
        for seed in range(3)
    ]
    print(f"fourier(silu), L={lmax}, default resolution {act.resolution}: O(3) error {max(errors):.1e}")
    assert max(errors) < 1e-6


@pytest.mark.parametrize("name", sorted(nonlinearities.FAMILIES))
def test_reset_parameters_reinitialises_like_a_fresh_construction(name, float64):
    irreps = "6x0e" if name == "scalar" else "4x0e+4x1o+4x2e"
    torch.manual_seed(1)
    fresh = nonlinearities.build(name, irreps)
    act = nonlinearities.build(name, irreps)
    with torch.no_grad():
        for parameter in act.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter) + 0.1)
    perturbed = {n: p.detach().clone() for n, p in act.named_parameters() if p.numel()}
    assert bool(perturbed) == (name in {"norm", "tensor_product"})  # the others have no parameters
    act.reset_parameters()
    assert all(not torch.equal(act.get_parameter(n), value) for n, value in perturbed.items())
    torch.manual_seed(1)
    act.reset_parameters()
    theirs = dict(fresh.named_parameters())
    assert all(torch.equal(p, theirs[n]) for n, p in act.named_parameters())
    features = act.irreps_in.randn(5, -1)
    torch.testing.assert_close(act(features), fresh(features), atol=0, rtol=0)
