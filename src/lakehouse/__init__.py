"""The course library: sessions for every engine, Delta tables, datasets and checks.

>>> from lakehouse import get_spark, DeltaTable    # doctest: +SKIP
>>> spark = get_spark()                             # doctest: +SKIP
"""

from lakehouse.config import ENGINES, SCALES, Settings, settings
from lakehouse.engines import EngineUnavailable, engine_of
from lakehouse.session import get_spark

__all__ = [
    "ENGINES",
    "SCALES",
    "DeltaTable",
    "EngineUnavailable",
    "Settings",
    "engine_of",
    "get_spark",
    "settings",
]


def __getattr__(name):
    # DeltaTable pulls in the engines' table code; load it only when a notebook asks for it.
    if name == "DeltaTable":
        from lakehouse.tables import DeltaTable

        return DeltaTable
    raise AttributeError(f"module 'lakehouse' has no attribute {name!r}")
