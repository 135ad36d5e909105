"""Shared pytest fixtures for the course's test suite."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml)."""
    return REPO_ROOT


# The solution notebooks take most of the suite's time: classic in one file, through Spark
# Connect in another. Collected first, those two files are the first units of work that `make
# test`'s two pytest-xdist workers take (--dist loadfile --no-loadscope-reorder), one each; the
# other files go to whichever worker is free first.
_LONGEST_FIRST = ("test_notebooks.py", "test_notebooks_connect.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name not in _LONGEST_FIRST)
