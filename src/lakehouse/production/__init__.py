"""From course to production: what a Databricks workspace needs from the course's notebooks.

``compat`` reads a notebook's code for what a workspace would refuse (serverless limits,
local paths, unfed widgets); ``bundle`` loads and cross-checks the Asset Bundle at the
repository root (``databricks.yml``). Both return :class:`Finding` objects that name the file,
the place and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Finding"]


@dataclass(frozen=True)
class Finding:
    """One thing a workspace would reject, or a bundle gets wrong.

    ``path`` is the file (relative to the repository), ``where`` the place in it (a notebook's
    ``code cell 3, line 2`` or a bundle key such as ``resources.jobs.x.tasks[2]``), ``rule`` a
    short name for the kind of problem, ``subject`` what was found (a method, a Spark property,
    a parameter name), ``message`` what is wrong and the fix. ``accepted`` is set when the
    course keeps it on purpose (the reason, e.g. a lesson that needs classic compute).

    >>> str(Finding("a.ipynb", "code cell 1, line 1", "cache", ".cache()", "uses .cache()"))
    'a.ipynb: code cell 1, line 1: uses .cache()'
    """

    path: str
    where: str
    rule: str
    subject: str
    message: str
    accepted: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.where}: {self.message}"
