"""Where the course keeps its data and which engine and scale are in force.

Every setting has one environment variable, so a notebook, a test run and CI can each choose
their own without editing code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from lakehouse.engines import ENGINES

SCALES = ("tiny", "small", "medium", "large")
# Spark's shuffle partitions per scale; delta-spark rebuilds a table's state with as many tasks.
SHUFFLE_PARTITIONS = {"tiny": 2, "small": 4, "medium": 8, "large": 16}
# Where delta-spark keeps table names: "hive", a Hive metastore on embedded Derby per catalog
# (names persist across sessions, the default); "in-memory", Spark's own catalog, which forgets
# names when the session ends and starts about 10 s sooner: for jobs that address every table by
# path, such as the reliability drills' short-lived children.
METASTORES = ("hive", "in-memory")

_CATALOG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def project_root() -> Path:
    """The course checkout: ``LAKEHOUSE_HOME``, else the nearest folder above the current one
    holding the course's ``pyproject.toml``, else the folder this package was installed from."""
    if home := os.environ.get("LAKEHOUSE_HOME"):
        return Path(home).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        marker = folder / "pyproject.toml"
        if marker.is_file() and 'name = "lakehouse-course"' in marker.read_text():
            return folder
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    """The settings in force; build it with :func:`settings`."""

    engine: str
    scale: str
    seed: int
    lake: Path
    datasets: Path
    catalog: str
    remote: str | None
    metastore: str = "hive"

    @property
    def catalog_path(self) -> Path:
        """The folder that holds this catalog's schemas: ``<lake>/<catalog>``."""
        return self.lake / self.catalog

    def table_path(self, schema: str, table: str) -> Path:
        return self.catalog_path / schema / table

    def source_path(self) -> Path:
        """Where the generator writes the raw sources for this scale."""
        return self.datasets / self.scale


def check_choice(kind: str, value: str, choices: tuple[str, ...], env: str) -> str:
    if value not in choices:
        raise ValueError(
            f"Unknown {kind} {value!r}. Choose one of {', '.join(choices)} "
            f"(argument or the {env} environment variable)."
        )
    return value


def settings(
    *,
    engine: str | None = None,
    scale: str | None = None,
    seed: int | None = None,
    catalog: str | None = None,
    lake: str | os.PathLike | None = None,
    datasets: str | os.PathLike | None = None,
    remote: str | None = None,
) -> Settings:
    """Resolve each setting from its argument, else its environment variable, else the default.

    >>> settings(scale="tiny").scale
    'tiny'
    """
    root = project_root()
    # "auto" as an argument still lets LAKEHOUSE_ENGINE decide: notebooks default to it.
    engine = (
        (engine if engine not in (None, "", "auto") else None)
        or os.environ.get("LAKEHOUSE_ENGINE")
        or "auto"
    )
    if engine != "auto":
        check_choice("engine", engine, ENGINES + ("auto",), "LAKEHOUSE_ENGINE")
    scale = check_choice(
        "scale", scale or os.environ.get("LAKEHOUSE_SCALE", "tiny"), SCALES, "LAKEHOUSE_SCALE"
    )
    catalog = catalog or os.environ.get("LAKEHOUSE_CATALOG", "lakehouse")
    if not _CATALOG_NAME.match(catalog):
        raise ValueError(
            f"Catalog name {catalog!r} is not valid: use lower-case letters, digits and "
            "underscores, starting with a letter (e.g. 'lakehouse' or 'ci_run_42')."
        )
    return Settings(
        engine=engine,
        scale=scale,
        seed=int(seed if seed is not None else os.environ.get("LAKEHOUSE_SEED", 42)),
        lake=Path(lake or os.environ.get("LAKEHOUSE_LAKE") or root / "lake").expanduser().resolve(),
        datasets=Path(datasets or os.environ.get("LAKEHOUSE_DATASETS") or root / "datasets")
        .expanduser()
        .resolve(),
        catalog=catalog,
        remote=remote if remote is not None else os.environ.get("SPARK_REMOTE") or None,
        metastore=check_choice(
            "metastore",
            os.environ.get("LAKEHOUSE_METASTORE") or "hive",
            METASTORES,
            "LAKEHOUSE_METASTORE",
        ),
    )
