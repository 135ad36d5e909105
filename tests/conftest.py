"""Shared pytest fixtures for the course's test suite."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml)."""
    return REPO_ROOT


# Longest first, so the two pytest-xdist workers of `make test` (--dist loadfile
# --no-loadscope-reorder take files in collected order) end together: the solution notebooks,
# classic in one file and through Spark Connect in another, one per worker; then the files
# that run whole Spark jobs, services and kill drills, longest first (from the CI log's slowest
# tests); then every other file, in name order, filling the gaps at the end. A long file left
# for last keeps one worker busy while the other idles.
_LONGEST_FIRST = (
    "test_notebooks.py",
    "test_notebooks_connect.py",
    "test_streaming_exactly_once.py",
    "test_reliability.py",
    "test_extract.py",
    "test_ml_features.py",
    "test_ml_scoring.py",
    "test_streaming_kafka.py",
    "test_conformance.py",
    "test_services.py",
    "test_delta_spark_engine.py",
    "test_system_of_record.py",
    "test_governance_delta.py",
    "test_production_pipeline_run.py",
    "test_production_dashboards.py",
    "test_production_pipeline.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
