"""The engines the course runs on, one package each: ``lakehouse.engines.embedded`` (local
PySpark with Delta Lake provided by delta-rs)."""
