"""Shared pytest fixtures for the course's test suite."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml)."""
    return REPO_ROOT


# The solution notebooks take about half of the suite's time. Collected first, their file is
# the first unit of work that `make test`'s pytest-xdist workers take (--dist loadfile
# --no-loadscope-reorder), so the other worker runs every other file alongside it.
_LONGEST_FIRST = ("test_notebooks.py",)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name not in _LONGEST_FIRST)
