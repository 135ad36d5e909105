"""The embedded engine: local PySpark with Delta Lake provided by delta-rs.

``format("delta")`` is a Python data source (delta_source.py) over the Delta log (log.py), whose
DataFrame writes writes.py commits; the lake folder is the catalog (catalog.py); writer_shim.py
and sql_guard.py fit Spark's readers, writers and SQL to it. ``DeltaTable`` is table.py, with
merge.py, rewrite.py, commit.py, optimize.py and builder.py doing the work behind its methods.
"""
