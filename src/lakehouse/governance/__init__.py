"""Governance: classify, protect, erase provably, trace, audit and observe the lakehouse."""

GOVERNANCE_SCHEMA = "governance"  # every table of the module lives here
