"""Errors the embedded engine raises: each names what was wrong and how to fix it."""


class DeltaError(Exception):
    """A Delta operation on the embedded engine could not be done as asked."""


class TableNotFound(DeltaError):
    """No Delta table at a path, or no table of that name in the catalog."""


class ConcurrentModification(DeltaError):
    """Another writer committed first and its change conflicts with this one."""


class UnsupportedOperation(DeltaError, NotImplementedError):
    """A Delta API call the embedded engine cannot do; the message names an alternative."""
