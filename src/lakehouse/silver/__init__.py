"""Silver: cleansed, validated and conformed tables built from Bronze.

Modules: ``validation`` (types, rules, quarantine), ``expectations`` (DLT-style data quality),
``dedup`` (latest record per key, idempotent upserts), ``scd2`` (history-tracking dimensions),
``cdc`` (applying a change feed), ``sessions`` (web sessionization).
"""
