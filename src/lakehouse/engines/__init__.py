"""The engines the course runs on, one package each: ``lakehouse.engines.embedded`` (local
PySpark with Delta Lake provided by delta-rs) and ``lakehouse.engines.delta_spark`` (local PySpark
with Delta Lake's own jars)."""


class EngineUnavailable(RuntimeError):
    """The engine asked for cannot start on this machine; the message says what is missing."""
