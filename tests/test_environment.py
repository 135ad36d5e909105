"""The environment files agree with pyproject.toml's pins.

environment.yml (conda) must carry exactly pyproject's dependencies plus the test extra; the
Databricks Connect environment pins the same versions for the packages it shares, except where
databricks-connect forces otherwise (listed below with the reason), and never pyspark.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Shared packages the Databricks environment may pin differently, and why.
DATABRICKS_EXCEPTIONS = {
    "numpy": "databricks-connect 16.1.7 requires numpy<2",
    "pandas": "pandas 3.x requires numpy>=2, which databricks-connect 16.1.7 forbids",
}
DATABRICKS_CONNECT = "databricks-connect==16.1.7"
NOT_IN_DATABRICKS = {"pyspark", "delta-spark"}  # both install the `pyspark` package

_REQ = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<extras>\[[^\]]*\])?\s*(?P<spec>.*?)\s*$"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(line: str) -> tuple[str, str, str]:
    """``'pyspark[connect]==4.1.4'`` -> ``('pyspark', '[connect]', '==4.1.4')``."""
    match = _REQ.match(line.strip())
    assert match, f"cannot parse requirement {line!r}"
    return canonical(match["name"]), match["extras"] or "", match["spec"].replace(" ", "")


def pins(lines: list[str]) -> dict[str, str]:
    """name -> 'extras==version' for requirement lines (options such as -e and -r skipped)."""
    result = {}
    for line in lines:
        if line.startswith("-"):
            continue
        name, extras, spec = parse_requirement(line)
        result[name] = f"{extras}{spec}"
    return result


def load_yaml(path: Path) -> dict:
    """The environment file as data: PyYAML when installed, else a parser for its plain subset."""
    try:
        import yaml
    except ImportError:
        return _mini_yaml(path.read_text())
    return yaml.safe_load(path.read_text())


def _mini_yaml(text: str) -> dict:
    # Enough for conda files: top-level scalars and lists, and the nested `- pip:` list.
    data: dict = {}
    key = None
    pip: list | None = None
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        item = line.strip()
        if indent == 0 and item.endswith(":"):
            key, pip = item[:-1], None
            data[key] = []
        elif indent == 0 and ":" in item:
            name, value = item.split(":", 1)
            data[name.strip()] = value.strip()
        elif item == "- pip:":
            pip = []
            data[key].append({"pip": pip})
        elif item.startswith("- ") and pip is not None and indent > 2:
            pip.append(item[2:].strip())
        elif item.startswith("- "):
            pip = None
            data[key].append(item[2:].strip())
    return data


def conda_lists(path: Path) -> tuple[list[str], list[str]]:
    """(conda dependencies, pip lines with ``-r`` files expanded) of an environment file."""
    env = load_yaml(path)
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_lines: list[str] = []
    for d in env["dependencies"]:
        if isinstance(d, dict):
            for line in d.get("pip", []):
                if line.startswith("-r "):
                    pip_lines += requirement_lines(path.parent / line[3:].strip())
                else:
                    pip_lines.append(line)
    return conda, pip_lines


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def project_pins(project) -> dict[str, str]:
    return pins(project["dependencies"] + project["optional-dependencies"]["test"])


def drift(expected: dict[str, str], actual: dict[str, str], where: str) -> list[str]:
    lines = []
    for name in sorted(expected.keys() | actual.keys()):
        if name not in actual:
            lines.append(f"{name}: pyproject.toml has {expected[name]}, {where} lacks it")
        elif name not in expected:
            lines.append(f"{name}: {where} has {actual[name]}, pyproject.toml lacks it")
        elif expected[name] != actual[name]:
            lines.append(f"{name}: pyproject.toml {expected[name]} != {where} {actual[name]}")
    return lines


def test_every_pyproject_dependency_is_pinned_exactly(project):
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    loose = [
        f"{group}: {line}"
        for group, lines in groups.items()
        for line in lines
        if not re.fullmatch(r"==[^,;*]+", parse_requirement(line)[2])
    ]
    assert not loose, "pin these with == (CI and learners must get one engine):\n" + "\n".join(
        loose
    )


def test_conda_environment_mirrors_pyproject_pins(project_pins):
    conda, pip_lines = conda_lists(ROOT / "environment.yml")
    problems = drift(project_pins, pins(pip_lines), "environment.yml")
    assert not problems, "environment.yml drifted from pyproject.toml:\n" + "\n".join(problems)
    assert "-e ." in pip_lines, "environment.yml should install the course package (-e .)"
    assert "openjdk=17" in conda, "Spark 4.1 needs Java 17: keep openjdk=17 in environment.yml"
    assert any(d.startswith("python=3.") for d in conda)


def test_databricks_environment_pins_shared_packages_and_has_no_pyspark(project_pins):
    conda, pip_lines = conda_lists(ROOT / "environment-databricks.yml")
    databricks = pins(pip_lines)
    forbidden = sorted(NOT_IN_DATABRICKS & databricks.keys())
    assert not forbidden, f"databricks-connect conflicts with {forbidden}: remove them"
    assert pins([DATABRICKS_CONNECT]).items() <= databricks.items()
    assert "openjdk" not in " ".join(conda), "Databricks Connect needs no local Java"

    loose = [f"{n}{s}" for n, s in databricks.items() if not re.fullmatch(r"(\[.*\])?==.+", s)]
    assert not loose, f"pin with ==: {loose}"
    shared = {n: s for n, s in project_pins.items() if n in databricks}
    expected = {n: s for n, s in shared.items() if n not in DATABRICKS_EXCEPTIONS}
    actual = {n: databricks[n] for n in expected}
    problems = drift(expected, actual, "the Databricks environment")
    assert not problems, "Databricks environment drifted:\n" + "\n".join(problems)
    for name, why in DATABRICKS_EXCEPTIONS.items():
        assert name in databricks, f"{name} must be pinned in the Databricks environment ({why})"


def test_mini_yaml_parser_reads_the_environment_files_like_pyyaml():
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is what the fallback parser is checked against"
    )
    for name in ("environment.yml", "environment-databricks.yml"):
        text = (ROOT / name).read_text()
        assert _mini_yaml(text) == yaml.safe_load(text), name


# ------------------------------------------------------------------------------------------------
# The JVM artifacts (src/lakehouse/conf/jvm-artifacts.txt) against the Python pins
# ------------------------------------------------------------------------------------------------
def jvm_pins() -> dict[str, str]:
    from lakehouse.engines.delta_spark import jvm

    return {f"{a.group}:{a.name}": a.version for a in jvm.pinned()}


def test_jvm_delta_matches_the_pip_delta_spark_and_the_spark_it_runs_on(project_pins):
    """configure_spark_with_delta_pip asks for delta-spark_<spark major.minor>_2.13 at the pip
    delta-spark version: the pinned jar must be exactly that, or Python and JVM disagree."""
    delta_version = project_pins["delta-spark"].split("==")[-1]
    spark_version = project_pins["pyspark"].split("==")[-1]
    spark_minor = ".".join(spark_version.split(".")[:2])
    expected = {
        f"io.delta:delta-spark_{spark_minor}_2.13": delta_version,
        "io.delta:delta-storage": delta_version,
    }
    actual = jvm_pins()
    assert not drift(expected, {k: actual.get(k, "(missing)") for k in expected}, "jvm"), (
        f"jvm-artifacts.txt {actual} drifted from pyproject (delta-spark {delta_version}, "
        f"pyspark {spark_version}); pin io.delta jars at {delta_version}"
    )


def test_pip_delta_spark_asks_for_the_pinned_artifact():
    """Delta's own helper, configure_spark_with_delta_pip, names the Maven coordinate it wants
    for the installed pyspark and delta-spark: it must be in the pinned list, version and all."""
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    builder = configure_spark_with_delta_pip(SparkSession.Builder())  # starts nothing
    asked = builder._options["spark.jars.packages"].split(",")
    pinned = {f"{group_name}:{version}" for group_name, version in jvm_pins().items()}
    assert set(asked) <= pinned, f"delta-spark asks for {asked}; jvm-artifacts.txt pins {pinned}"


def test_jvm_artifact_list_rejects_a_malformed_line(tmp_path):
    from lakehouse.engines.delta_spark import jvm

    bad = tmp_path / "list.txt"
    bad.write_text("spark io.delta:delta-spark_4.1_2.13\n")
    with pytest.raises(
        jvm.ArtifactError, match=r"list.txt:1: expected 'use group:artifact:version'"
    ):
        jvm.pinned(bad)


USES = {"spark": "every Spark session", "kafka": "the local Kafka broker only"}


def test_every_jvm_artifact_says_who_loads_it():
    from lakehouse.engines.delta_spark import jvm

    unknown = [f"{a.use} {a.coordinate}" for a in jvm.pinned() if a.use not in USES]
    assert not unknown, f"jvm-artifacts.txt: use one of {sorted(USES)} for {unknown}"


def test_spark_kafka_connector_is_on_pysparks_minor_line(project_pins):
    """Spark's Kafka connector and its token provider are releases of the installed pyspark's
    minor line (a patch release runs on any Spark of its minor line), the connector at least
    4.1.3 (earlier 4.1 releases fail a query restarted after a crash, SPARK-57438), the token
    provider no newer than the connector."""
    from lakehouse.engines.delta_spark import jvm

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))

    spark_minor = ".".join(project_pins["pyspark"].split("==")[-1].split(".")[:2])
    spark = {f"{a.group}:{a.name}": a.version for a in jvm.pinned() if a.use == "spark"}
    connector = spark["org.apache.spark:spark-sql-kafka-0-10_2.13"]
    token_provider = spark["org.apache.spark:spark-token-provider-kafka-0-10_2.13"]
    for name, pinned in (("connector", connector), ("token provider", token_provider)):
        assert pinned.startswith(spark_minor + "."), f"{name} {pinned} for Spark {spark_minor}"
    if spark_minor == "4.1":
        assert version(connector) >= (4, 1, 3), f"connector {connector}: SPARK-57438 needs 4.1.3"
    assert version(token_provider) <= version(connector)


def _runtime_dependencies(descriptor: Path) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(runtime dependencies, exclusions) of a module, from the Ivy descriptor of its POM."""
    import xml.etree.ElementTree as ET

    needed, excluded = set(), set()
    for dependency in ET.parse(descriptor).getroot().iter("dependency"):
        scopes = {mapping.split("->")[0] for mapping in dependency.get("conf", "").split(";")}
        if scopes & {"compile", "runtime"}:
            needed.add((dependency.get("org"), dependency.get("name")))
            excluded |= {(e.get("org"), e.get("module")) for e in dependency.iter("exclude")}
    return needed, excluded


def test_the_brokers_runtime_closure_is_listed_whole():
    """Every runtime dependency that a broker jar's POM declares is itself pinned for the
    broker (less what a POM excludes): the jars are fetched without their dependencies, so an
    omission would surface only as a ClassNotFoundException when the broker starts."""
    from lakehouse.engines.delta_spark import jvm

    broker = [a for a in jvm.pinned() if a.use == "kafka"]
    descriptors = {
        a: jvm.cache_dir() / "ivy" / a.group / a.name / f"ivy-{a.version}.xml" for a in broker
    }
    absent = [a.coordinate for a, path in descriptors.items() if not path.is_file()]
    if absent:
        pytest.skip(f"POMs not in the JVM cache (run scripts/bootstrap): {absent[:3]}")
    listed = {(a.group, a.name) for a in broker}
    needed, excluded = {}, set()
    for artifact, path in descriptors.items():
        wants, excludes = _runtime_dependencies(path)
        excluded |= excludes
        for dependency in wants:
            needed.setdefault(dependency, artifact.coordinate)
    missing = {
        f"{group}:{name} (needed by {by})"
        for (group, name), by in needed.items()
        if (group, name) not in listed and (group, name) not in excluded
    }
    assert not missing, "pin these for the broker in jvm-artifacts.txt:\n" + "\n".join(
        sorted(missing)
    )
