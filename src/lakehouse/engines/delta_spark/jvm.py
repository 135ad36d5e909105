"""The JVM artifacts the delta-spark engine needs beyond pyspark's own jars, from one pinned list.

``lakehouse/conf/jvm-artifacts.txt`` names each artifact (``group:artifact:version``) and what
uses it. :func:`fetch` downloads them once from Maven Central with Apache Ivy -- the copy inside
pyspark, so no Maven install is needed -- into the project's cache; :func:`jars` then hands Spark
the files, and a session starts without resolving anything, offline.

Command line (``scripts/bootstrap`` runs the first)::

    python -m lakehouse.engines.delta_spark.jvm fetch   # download what is missing; say which failed
    python -m lakehouse.engines.delta_spark.jvm status  # what is cached, what is missing
    python -m lakehouse.engines.delta_spark.jvm path    # the cached jars for Spark, comma-separated
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lakehouse.config import project_root

PINNED_LIST = Path(__file__).parents[2] / "conf" / "jvm-artifacts.txt"  # lakehouse/conf
FALLBACK = "LAKEHOUSE_ENGINE=embedded"


class ArtifactError(RuntimeError):
    """A pinned JVM artifact is missing from the cache or could not be fetched."""


@dataclass(frozen=True)
class Artifact:
    """One pinned line: ``use`` says who loads it (``spark``: every Spark session)."""

    use: str
    group: str
    name: str
    version: str

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.name}:{self.version}"

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}.jar"


def pinned(path: Path = PINNED_LIST) -> list[Artifact]:
    """The artifacts of the pinned list, in its order."""
    artifacts = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        parts = fields[1].split(":") if len(fields) >= 2 else []
        if len(parts) != 3 or not all(parts):
            raise ArtifactError(
                f"{path}:{number}: expected 'use group:artifact:version', got {raw.strip()!r}"
            )
        artifacts.append(Artifact(fields[0], *parts))
    return artifacts


def cache_dir() -> Path:
    """``LAKEHOUSE_JVM_CACHE``, else ``.jvm/`` in the course checkout."""
    if folder := os.environ.get("LAKEHOUSE_JVM_CACHE"):
        return Path(folder).expanduser().resolve()
    return project_root() / ".jvm"


def jar_path(artifact: Artifact, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "jars" / artifact.group / artifact.file_name


def missing(use: str | None = None, cache: Path | None = None) -> list[Artifact]:
    """Pinned artifacts (for ``use``, or all) whose jar is not in the cache."""
    return [
        a for a in pinned() if (use is None or a.use == use) and not jar_path(a, cache).is_file()
    ]


def cached(use: str = "spark") -> bool:
    """Whether every artifact for ``use`` is in the cache (no network involved)."""
    return not missing(use)


def jars(use: str = "spark") -> list[str]:
    """The cached jar files for ``use``; raises :class:`ArtifactError` naming what is missing."""
    absent = missing(use)
    if absent:
        names = ", ".join(a.coordinate for a in absent)
        raise ArtifactError(
            f"JVM artifacts not in the cache {cache_dir()}: {names}. Run scripts/bootstrap (or "
            f"python -m lakehouse.engines.delta_spark.jvm fetch) on a machine that reaches Maven "
            f"Central, or run the course on the embedded engine: {FALLBACK}."
        )
    return [str(jar_path(a)) for a in pinned() if a.use == use]


def ivy_jar() -> Path:
    """Apache Ivy as shipped inside pyspark (Spark resolves ``--packages`` with it)."""
    from lakehouse.connect_server import spark_home

    found = sorted((spark_home() / "jars").glob("ivy-*.jar"))
    if not found:
        raise ArtifactError(f"no ivy-*.jar in {spark_home() / 'jars'}; reinstall pyspark")
    return found[-1]


def fetch_command(artifact: Artifact, cache: Path | None = None) -> list[str]:
    """The Ivy command that downloads one artifact (without its dependencies) into the cache.

    Ivy's default settings resolve from Maven Central; ``LAKEHOUSE_IVY_SETTINGS`` names an
    ``ivysettings.xml`` for a company mirror or proxy instead."""
    from lakehouse.connect_server import find_java_home

    cache = cache or cache_dir()
    java_home = find_java_home()
    java = str(Path(java_home) / "bin" / "java") if java_home else "java"
    command = [java, "-Djava.net.useSystemProxies=true", "-jar", str(ivy_jar())]
    if settings_file := os.environ.get("LAKEHOUSE_IVY_SETTINGS"):
        command += ["-settings", settings_file]
    return [
        *command,
        "-dependency",
        artifact.group,
        artifact.name,
        artifact.version,
        "-notransitive",
        "-confs",
        "default",
        "-types",
        "jar",
        "bundle",  # an OSGi bundle (Jackson, snappy ...) is a plain jar to the JVM
        "-cache",
        str(cache / "ivy"),
        "-retrieve",
        str(cache / "jars" / "[organisation]" / "[artifact]-[revision].[ext]"),
    ]


def batch_ivy_file(artifacts: list[Artifact]) -> str:
    """An ``ivy.xml`` asking for each artifact without its dependencies, for one Ivy run."""
    lines = [
        f'    <dependency org="{a.group}" name="{a.name}" rev="{a.version}" '
        'transitive="false" conf="default->default"/>'
        for a in artifacts
    ]
    return "\n".join(
        [
            '<ivy-module version="2.0">',
            '  <info organisation="lakehouse" module="jvm-artifacts"/>',
            '  <configurations><conf name="default"/></configurations>',
            "  <dependencies>",
            *lines,
            "  </dependencies>",
            "</ivy-module>",
            "",
        ]
    )


def _batches(artifacts: list[Artifact]) -> list[list[Artifact]]:
    # One resolve keeps one version of a module (Ivy evicts the other): a module pinned at two
    # versions (kafka-clients for Spark and for the broker) goes to a second batch.
    batches: list[list[Artifact]] = []
    for artifact in artifacts:
        for batch in batches:
            if all((a.group, a.name) != (artifact.group, artifact.name) for a in batch):
                batch.append(artifact)
                break
        else:
            batches.append([artifact])
    return batches


def _fetch_batch(artifacts: list[Artifact], cache: Path) -> None:
    command = fetch_command(artifacts[0], cache)
    at = command.index("-dependency")
    ivy_file = cache / "ivy" / f"batch-{os.getpid()}.xml"
    ivy_file.parent.mkdir(parents=True, exist_ok=True)
    ivy_file.write_text(batch_ivy_file(artifacts), encoding="utf-8")
    # "-dependency g a v -notransitive" becomes "-ivy batch.xml"; the rest is the same
    command[at : at + 5] = ["-ivy", str(ivy_file)]
    try:
        subprocess.run(command, capture_output=True, text=True, timeout=1800)
    finally:
        ivy_file.unlink(missing_ok=True)


def fetch(*, cache: Path | None = None, log=print) -> list[Artifact]:
    """Download every pinned artifact not yet cached; return those fetched.

    The missing artifacts are fetched in one Ivy run (one JVM start, not one per jar); any
    that run did not bring are then fetched one by one, so a failure names its artifact.
    Raises :class:`ArtifactError` at the first failure, naming the artifact, the command that
    failed, what Ivy said and the fallback engine."""
    cache = cache or cache_dir()
    wanted = [a for a in pinned() if not jar_path(a, cache).is_file()]
    if len(wanted) > 1:
        log(f"fetching {len(wanted)} JVM artifacts")
        for batch in _batches(wanted):
            _fetch_batch(batch, cache)
    fetched = []
    for artifact in wanted:
        if jar_path(artifact, cache).is_file():
            fetched.append(artifact)
            continue
        command = fetch_command(artifact, cache)
        log(f"fetching {artifact.coordinate}")
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0 or not jar_path(artifact, cache).is_file():
            said = [
                line.strip()
                for line in (result.stdout + result.stderr).splitlines()
                if "not found" in line or "ERROR" in line or "Exception" in line
            ]
            raise ArtifactError(
                f"could not fetch {artifact.coordinate} (exit {result.returncode}).\n"
                f"command: {' '.join(command)}\n"
                f"Ivy said: {' | '.join(said[:5]) or '(nothing useful; run the command to see)'}"
                f"\nCheck the network or proxy (LAKEHOUSE_IVY_SETTINGS names an ivysettings.xml "
                f"for a mirror), or run the course on the embedded engine: {FALLBACK}."
            )
        fetched.append(artifact)
    return fetched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.engines.delta_spark.jvm", description=__doc__
    )
    parser.add_argument("command", choices=["fetch", "status", "path"])
    parser.add_argument("--use", default="spark", help="which artifacts 'path' lists")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        try:
            fetched = fetch()
        except ArtifactError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        total = len(pinned())
        print(f"JVM artifacts: {total} pinned, {len(fetched)} fetched, cache {cache_dir()}")
        return 0
    if args.command == "status":
        absent = missing()
        for artifact in pinned():
            state = "missing" if artifact in absent else "cached"
            print(f"{state:8} {artifact.use:8} {artifact.coordinate}")
        return 1 if absent else 0
    try:
        print(",".join(jars(args.use)))
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
