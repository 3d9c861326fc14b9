"""Fixtures of the data tests: the shared real-data folder (skipped when absent)."""

from pathlib import Path

import pytest

#: ``../shared/data`` beside the checkout.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not present")
    return SHARED_DATA
