"""The embedded engine: local PySpark with Delta Lake provided by delta-rs."""
