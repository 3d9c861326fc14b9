"""Tests of ``examples/tetris.py``: data, symmetry of the network, a short run, and (slow) full training."""

from __future__ import annotations

import pytest
import torch

from molequi.testing import random_o3


def _signed_volume(points: torch.Tensor) -> torch.Tensor:
    """``[..., 4, 3] -> [...]``: ``det(p1 - p0, p2 - p0, p3 - p0)``."""
    return torch.linalg.det(points[..., 1:, :] - points[..., :1, :])


def test_test_sets_are_congruent_to_their_labels(load_example, float64):
    tetris = load_example("tetris")
    rotated, reflected = tetris.make_test_sets(64, seed=1)
    for test_set in (rotated, reflected):
        points = test_set.pos.reshape(-1, 4, 3)
        canonical = tetris.SHAPES[test_set.labels]
        torch.testing.assert_close(torch.cdist(points, points), torch.cdist(canonical, canonical))
        # handedness of the chiral pieces (the corner is not planar but has a mirror plane: its
        # mirror image is itself with two points swapped, so its ordered volume may flip)
        chiral = test_set.labels < 2
        torch.testing.assert_close(_signed_volume(points[chiral]), _signed_volume(canonical[chiral]))
    assert torch.bincount(rotated.labels).tolist() == [8] * 8
    # reflections must not be tied to the class: every chiral piece appears both reflected and not
    assert set(reflected.labels[rotated.labels == 0].tolist()) == {0, 1}


@pytest.mark.parametrize("name", ["scalar", "norm", "gate", "fourier_poly"])
def test_network_is_invariant_and_reflection_swaps_the_chiral_pair(load_example, float64, name):
    tetris = load_example("tetris")
    torch.manual_seed(0)
    model = tetris.TetrisNet(tetris.VARIANTS[name])
    edge_index, batch = tetris.fully_connected(2)
    pos = tetris.SHAPES[:2].reshape(-1, 3)
    logits = model(pos, edge_index, batch, 2)
    swap = list(tetris.MIRROR)
    for matrix in random_o3(2, generator=torch.Generator().manual_seed(0)):
        moved = model(pos @ matrix.T + torch.randn(1, 3), edge_index, batch, 2)
        expected = logits if torch.linalg.det(matrix) > 0 else logits[:, swap]
        torch.testing.assert_close(moved, expected, atol=1e-10, rtol=0)
    # scalar and fourier features all have natural parity: the pseudoscalar is zero, the pair's logits tie
    sees_chirality = bool((logits[:, 0] - logits[:, 1]).abs().min() > 1e-6)
    assert sees_chirality == (name not in {"scalar", "fourier_poly"})


def test_tetris_main_short_run(load_example, capsys):
    tetris = load_example("tetris")
    results = tetris.main(["--nonlinearity", "gate", "--max-steps", "3", "--num-test", "16", "--no-progress"])
    (result,) = results
    assert result.nonlinearity == "gate" and result.steps == 3 and result.num_parameters > 0
    assert torch.isfinite(torch.tensor(result.final_loss))
    # an invariant network predicts every rotated copy of a piece alike: the accuracy counts whole classes
    num_classes = len(tetris.CLASSES)
    assert (result.accuracy_rotated * num_classes).is_integer()
    # the gate sees chirality and its pseudoscalar logit flips under reflection: a reflected piece is
    # predicted as the mirror partner of the unreflected prediction, right exactly when that one is
    assert result.accuracy_reflected == result.accuracy_rotated
    assert result.accuracy_merged >= result.accuracy_reflected  # merging the chiral pair can only add hits
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| nonlinearity | parameters | train steps |")
    assert lines[2].startswith("| gate | ")
    accuracies = (result.accuracy_rotated, result.accuracy_reflected, result.accuracy_merged)
    assert lines[2].endswith(" | ".join(f"{a:.3f}" for a in accuracies) + " |")


@pytest.mark.slow
def test_tetris_gate_learns_rotations_and_reflections(load_example):
    tetris = load_example("tetris")
    (result,) = tetris.main(["--nonlinearity", "gate", "--no-progress"])
    assert result.accuracy_rotated == 1.0
    assert result.accuracy_reflected == 1.0
