"""Shared fixtures: where the reference oracle lives, and shrinking helpers for tiny CPU runs."""

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference`` next to the clone; tests that need it skip in a user's clone."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference oracle not found at {REFERENCE_DIR} (only CI and dev machines have it)")
    return REFERENCE_DIR


@pytest.fixture(autouse=True)
def _small_threads():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield
