"""Tests of the species index: lookups without host synchronisation, and the separate check."""

from __future__ import annotations

import pytest
import torch

from molequi.nn.embedding import SpeciesIndex


def test_known_elements_map_to_contiguous_indices():
    index = SpeciesIndex(["O", 1, "C"])
    assert index.species == [1, 6, 8]
    z = torch.tensor([8, 1, 6, 1])
    assert index(z).tolist() == [2, 0, 1, 0]
    torch.testing.assert_close(index.one_hot(z), torch.eye(3)[[2, 0, 1, 0]])


def test_forward_and_one_hot_run_without_host_synchronisation():
    """On the meta device a tensor has no values: ``.item()``, ``bool()`` or ``.tolist()`` raise there."""
    index = SpeciesIndex([1, 8]).to("meta")
    z = torch.tensor([1, 8, 6, 0, 500, -3]).to("meta")
    assert index(z).shape == (6,)
    assert index.one_hot(z).shape == (6, 2)


def test_unknown_elements_get_an_index_past_the_end_and_a_nan_one_hot_row():
    index = SpeciesIndex([1, 8])
    z = torch.tensor([1, 6, 0, 119, 10_000, -1, 8])
    species = index(z)
    assert species.tolist() == [0, 2, 2, 2, 2, 2, 1]
    with pytest.raises(IndexError):
        torch.zeros(index.num_species)[species]  # a per-species table lookup cannot read another element's row
    one_hot = index.one_hot(z)
    assert torch.isnan(one_hot[1:6]).all()
    torch.testing.assert_close(one_hot[[0, 6]], torch.eye(2))


@pytest.mark.parametrize(
    "z, match",
    [
        ([1, 6, 6, 7], r"element\(s\) \['C', 'N'\] not among the model's species \['H', 'O'\]"),
        (torch.tensor([[8, 0], [200, 1]]), r"\['atomic number 0', 'atomic number 200'\]"),
        (torch.tensor([1.0, 8.0]), "must be integers"),
    ],
)
def test_check_names_what_is_unknown(z, match):
    with pytest.raises(ValueError, match=match):
        SpeciesIndex([1, 8]).check(z)


def test_check_accepts_known_and_empty_inputs():
    index = SpeciesIndex([1, 8])
    index.check(torch.tensor([8, 1, 1]))
    index.check(torch.zeros(0, dtype=torch.long))
