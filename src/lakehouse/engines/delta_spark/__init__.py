"""The delta-spark engine: local PySpark with Delta Lake's own jars, pinned and fetched once into
the project's cache (jvm.py), the session settings that load them offline with a Hive metastore
per catalog (conf.py), and ``DeltaTable`` as Delta SQL through Spark Connect (sql_table.py)."""
