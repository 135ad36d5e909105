"""lakehouse.ml.monitoring: each drift statistic against an independent computation (the formula
written out here, or scipy), with the edge cases (an empty window, a category unseen in the
baseline, a constant column); the profile and drift tables; the alert rule on a step drift;
and every wrong answer of lesson 05_ml/08's catalogue caught by its check with its message."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from lakehouse.ml import monitoring as mon

ROOT = Path(__file__).resolve().parents[1]
MISTAKES = json.loads(
    (ROOT / "solutions/05_ml/08_monitoring_and_drift.mistakes.json").read_text(encoding="utf-8")
)


def mistakes_of(cell: str) -> list[dict]:
    return [m for m in MISTAKES if m["task_cell"] == cell]


# --------------------------------------------------------------------------- statistics


def test_psi_is_the_formula_on_the_baseline_deciles():
    rng = np.random.default_rng(1)
    baseline, window = rng.normal(0, 1, 5_000), rng.normal(0.4, 1.2, 800)
    edges = np.quantile(baseline, [i / 10 for i in range(1, 10)])
    b = np.histogram(baseline, [-np.inf, *edges, np.inf])[0] / baseline.size
    w = np.histogram(window, [-np.inf, *edges, np.inf])[0] / window.size
    expected = sum((wi - bi) * math.log(wi / bi) for bi, wi in zip(b, w, strict=True))
    assert mon.psi(baseline, window) == pytest.approx(expected, rel=1e-9)
    assert mon.psi(baseline, baseline) == pytest.approx(0.0, abs=1e-12)


def test_psi_raises_empty_bins_to_epsilon():
    baseline = np.arange(100, dtype=float)  # deciles 10, 20, ..., 90
    window = np.full(50, 5.0)  # every row in the first bin, nine bins empty
    expected = (1 - 0.1) * math.log(1 / 0.1) + 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert mon.psi(baseline, window) == pytest.approx(expected, rel=1e-9)
    assert math.isfinite(mon.psi(baseline, window))


def test_psi_edge_cases_empty_window_constant_column_and_bad_bins():
    assert math.isnan(mon.psi(np.arange(10.0), np.array([])))
    constant = np.full(30, 7.0)
    assert mon.psi(constant, constant) == 0.0  # one edge, two bins: nothing moves
    assert mon.psi(constant, np.full(10, 8.0)) == pytest.approx(0.0)  # same bin [7, inf)
    assert mon.psi(constant, np.full(10, 6.0)) > 5  # all below: the empty bin's epsilon
    with pytest.raises(ValueError, match="at least 2 bins"):
        mon.psi(constant, constant, bins=1)
    with pytest.raises(ValueError, match="baseline is empty"):
        mon.psi(np.array([]), constant)


def test_categorical_psi_counts_a_category_unseen_in_the_baseline():
    baseline = ["a"] * 80 + ["b"] * 20
    window = ["a"] * 50 + ["b"] * 30 + ["new"] * 20
    shares = {"a": (0.8, 0.5), "b": (0.2, 0.3), "new": (1e-4, 0.2)}
    expected = sum((w - b) * math.log(w / b) for b, w in shares.values())
    assert mon.psi_categorical(baseline, window) == pytest.approx(expected, rel=1e-9)
    assert math.isnan(mon.psi_categorical(baseline, []))


def test_ks_test_is_scipys_and_empty_windows_give_nan():
    rng = np.random.default_rng(2)
    baseline, window = rng.lognormal(5, 0.3, 400), rng.lognormal(5.2, 0.3, 90)
    reference = stats.ks_2samp(baseline, window)
    assert mon.ks_test(baseline, window) == pytest.approx((reference.statistic, reference.pvalue))
    statistic, pvalue = mon.ks_test(baseline, [])
    assert math.isnan(statistic) and math.isnan(pvalue)
    # NaNs in a column are nulls, not values
    assert mon.ks_test(np.r_[baseline, np.nan], window) == pytest.approx(
        (reference.statistic, reference.pvalue)
    )


def test_ks_p_value_flags_a_negligible_shift_on_a_large_sample():
    rng = np.random.default_rng(3)
    values = rng.lognormal(5.5, 0.35, 400_000)
    statistic, pvalue = mon.ks_test(values[:200_000], values[200_000:] * 1.01)
    assert pvalue < 1e-6 and statistic < 0.02
    assert mon.psi(values[:200_000], values[200_000:] * 1.01) < mon.PSI_MODERATE


def test_js_distance_is_scipys_on_the_same_shares():
    rng = np.random.default_rng(4)
    baseline, window = rng.normal(0, 1, 2_000), rng.normal(1, 1, 500)
    edges = np.quantile(baseline, [i / 10 for i in range(1, 10)])
    b = np.histogram(baseline, [-np.inf, *edges, np.inf])[0] / baseline.size
    w = np.histogram(window, [-np.inf, *edges, np.inf])[0] / window.size
    assert mon.js_distance(baseline, window) == pytest.approx(jensenshannon(b, w, base=2))
    categorical = mon.js_distance(["a", "a", "b"], ["b", "c"], bins=None)
    assert categorical == pytest.approx(jensenshannon([2 / 3, 1 / 3, 0], [0, 1 / 2, 1 / 2], base=2))
    assert mon.js_distance(["a"], ["b"], bins=None) == pytest.approx(1.0)  # disjoint
    assert math.isnan(mon.js_distance(baseline, []))


def test_chi_squared_test_is_scipys_and_pools_sparse_cells():
    baseline = ["00"] * 600 + ["05"] * 80 + ["51"] * 60 + ["14"] * 2 + ["43"] * 1
    window = ["00"] * 70 + ["05"] * 15 + ["51"] * 10 + ["N7"] * 2  # N7 unseen in the baseline
    # 14, 43 and N7 expect fewer than 5 rows: pooled into one cell
    table = np.array([[600, 80, 60, 3], [70, 15, 10, 2]])
    reference = stats.chi2_contingency(table, correction=False)
    assert mon.chi_squared_test(baseline, window) == pytest.approx(
        (reference.statistic, reference.pvalue)
    )
    unpooled = stats.chi2_contingency(
        np.array([[600, 80, 60, 2, 1, 0], [70, 15, 10, 0, 0, 2]]), correction=False
    )
    assert unpooled.pvalue < 0.01 < mon.chi_squared_test(baseline, window)[1]


def test_chi_squared_test_edge_cases():
    assert mon.chi_squared_test(["a"] * 10, ["a"] * 5) == (0.0, 1.0)  # constant column
    statistic, pvalue = mon.chi_squared_test(["a", "b"], [])
    assert math.isnan(statistic) and math.isnan(pvalue)


def test_tv_and_wasserstein_distances():
    assert mon.tv_distance(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.25)
    assert mon.wasserstein([0.0, 1.0], [1.0, 2.0]) == pytest.approx(1.0)


def test_psi_noise_matches_a_simulation_and_minimum_count_inverts_it():
    rng = np.random.default_rng(5)
    baseline = rng.lognormal(5, 0.4, 2_000)
    n = 400
    simulated = np.quantile([mon.psi(baseline, rng.choice(baseline, n)) for _ in range(400)], 0.99)
    # windows drawn from the baseline itself: only the window's noise, so the formula
    # without the baseline's term
    assert simulated == pytest.approx(mon.psi_noise(n, 10**12), rel=0.35)
    count = mon.minimum_count(10, 0.25, 500)
    assert mon.psi_noise(count, 500) <= 0.25 < mon.psi_noise(count - 1, 500)
    with pytest.raises(ValueError, match="longer baseline or fewer bins"):
        mon.minimum_count(10, 0.25, 50)


# --------------------------------------------------------------------------- windows and tables


def test_windows_and_granularities():
    days = mon.windows("2026-06-01", "2026-06-04", "1 day")
    assert days == [
        (pd.Timestamp("2026-06-01"), pd.Timestamp("2026-06-02")),
        (pd.Timestamp("2026-06-02"), pd.Timestamp("2026-06-03")),
        (pd.Timestamp("2026-06-03"), pd.Timestamp("2026-06-04")),
    ]
    assert len(mon.windows("2026-06-01", "2026-07-01", "1 week")) == 5  # the last one partial
    with pytest.raises(ValueError, match="'1 day' or '1 week'"):
        mon.windows("2026-06-01", "2026-06-04", "daily")
    with pytest.raises(ValueError, match="is not after start"):
        mon.windows("2026-06-04", "2026-06-01", "1 day")


def step_drift(seed: int = 6, *, busy_shift: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Days from June 1: 'main' (200 rows a day) 2.2 times slower from June 20, 'thin' (5
    rows a day, never changes), 'busy' (2,000 rows a day) ``busy_shift`` times slower from
    June 8; a category column that never changes."""
    rng = np.random.default_rng(seed)
    parts = []
    for day in pd.date_range("2026-06-01", "2026-06-30"):
        for name, rows in (("main", 200), ("thin", 5), ("busy", 2_000)):
            factor = 1.0
            if name == "main" and day >= pd.Timestamp("2026-06-20"):
                factor = 2.2
            if name == "busy" and day >= pd.Timestamp("2026-06-08"):
                factor = busy_shift
            parts.append(
                pd.DataFrame(
                    {
                        "ts": day + pd.to_timedelta(rng.uniform(0, 86_400, rows), unit="s"),
                        "group": name,
                        "latency_ms": rng.lognormal(5.5, 0.35, rows) * factor,
                        "code": rng.choice(["00", "05", "51"], rows, p=[0.8, 0.1, 0.1]),
                    }
                )
            )
    frame = pd.concat(parts, ignore_index=True)
    baseline = frame[frame["ts"] < pd.Timestamp("2026-06-08")]
    return frame, baseline


WINDOWS = mon.windows("2026-06-08", "2026-07-01", "1 day")


@pytest.fixture(scope="module")
def tables():
    frame, baseline = step_drift(busy_shift=1.05)
    common = dict(time="ts", columns=["latency_ms", "code"], windows=WINDOWS, granularity="1 day")
    profile = mon.profile_metrics(frame, slice_by="group", baseline=baseline, **common)
    drift = mon.drift_metrics(frame, baseline, slice_by="group", **common)
    return frame, baseline, profile, drift


def test_profile_metrics_rows_and_figures(tables):
    frame, baseline, profile, _ = tables
    assert list(profile.columns) == mon._flat_names(mon.PROFILE_COLUMNS)
    # per window and slice (whole table + 3 groups): a :table row and one per column
    assert len(profile) == (len(WINDOWS) + 1) * 4 * 3
    day = profile[
        (profile["window_start"] == pd.Timestamp("2026-06-20"))
        & (profile["slice_value"] == "main")
        & (profile["column_name"] == "latency_ms")
    ].iloc[0]
    rows = frame[
        (frame["group"] == "main")
        & (frame["ts"] >= pd.Timestamp("2026-06-20"))
        & (frame["ts"] < pd.Timestamp("2026-06-21"))
    ]["latency_ms"]
    assert day["count"] == len(rows) == 200
    assert day["avg"] == pytest.approx(rows.mean())
    assert day["stddev"] == pytest.approx(rows.std())
    assert day["quantiles"] == pytest.approx(list(np.quantile(rows, mon.QUANTILES)))
    assert day["data_type"] == "double" and day["granularity"] == "1 day"
    base_rows = profile[profile["log_type"] == mon.BASELINE]
    assert base_rows["window_start"].isna().all() and base_rows["granularity"].isna().all()
    whole = base_rows[base_rows["slice_key"].isna() & (base_rows["column_name"] == ":table")]
    assert whole["count"].tolist() == [len(baseline)]
    code = profile[(profile["column_name"] == "code") & profile["slice_key"].isna()].iloc[0]
    assert code["data_type"] == "string" and code["distinct_count"] == 3
    assert pd.isna(code["avg"])


def test_drift_metrics_compare_with_the_baseline_and_the_previous_window(tables):
    frame, baseline, _, drift = tables
    assert list(drift.columns) == mon._flat_names(mon.DRIFT_COLUMNS)
    columns = drift[drift["column_name"] != ":table"]
    counts = columns.groupby("drift_type").size()
    assert counts[mon.BASELINE] == len(WINDOWS) * 4 * 2
    assert counts[mon.CONSECUTIVE] == (len(WINDOWS) - 1) * 4 * 2
    row = columns[
        (columns["window_start"] == pd.Timestamp("2026-06-20"))
        & (columns["slice_value"] == "main")
        & (columns["column_name"] == "latency_ms")
    ].set_index("drift_type")
    window = frame[
        (frame["group"] == "main")
        & (frame["ts"] >= pd.Timestamp("2026-06-20"))
        & (frame["ts"] < pd.Timestamp("2026-06-21"))
    ]["latency_ms"]
    previous = frame[
        (frame["group"] == "main")
        & (frame["ts"] >= pd.Timestamp("2026-06-19"))
        & (frame["ts"] < pd.Timestamp("2026-06-20"))
    ]["latency_ms"]
    reference = baseline[baseline["group"] == "main"]["latency_ms"]
    base = row.loc[mon.BASELINE]
    assert pd.isna(base["window_cmp_start"])
    assert base["population_stability_index"] == pytest.approx(mon.psi(reference, window))
    assert base["ks_test_statistic"] == pytest.approx(stats.ks_2samp(reference, window).statistic)
    assert base["avg_delta"] == pytest.approx(window.mean() - reference.mean())
    consecutive = row.loc[mon.CONSECUTIVE]
    assert consecutive["window_cmp_start"] == pd.Timestamp("2026-06-19")
    assert consecutive["population_stability_index"] == pytest.approx(mon.psi(previous, window))
    code = columns[(columns["column_name"] == "code") & (columns["drift_type"] == mon.BASELINE)]
    assert code["chi_squared_test_pvalue"].notna().all() and code["ks_test_pvalue"].isna().all()


def test_drift_metrics_refuse_bad_arguments(tables):
    frame, baseline, _, _ = tables
    common = dict(time="ts", columns=["latency_ms"], windows=WINDOWS, granularity="1 day")
    with pytest.raises(ValueError, match="needs a baseline frame"):
        mon.drift_metrics(frame, None, **common)
    with pytest.raises(ValueError, match="drift_types"):
        mon.drift_metrics(frame, baseline, drift_types=("LATEST",), **common)
    with pytest.raises(ValueError, match="has no column 'nope'"):
        mon.drift_metrics(frame, baseline, **{**common, "columns": ["nope"]})


def test_a_window_without_rows_gets_no_statistics(tables):
    frame, baseline, _, _ = tables
    empty = [(pd.Timestamp("2026-08-01"), pd.Timestamp("2026-08-02"))]
    drift = mon.drift_metrics(
        frame, baseline, time="ts", columns=["latency_ms"], windows=empty, granularity="1 day"
    )
    assert drift["population_stability_index"].isna().all()
    assert drift.loc[drift["column_name"] == ":table", "count_delta"].iloc[0] == -len(baseline)


# --------------------------------------------------------------------------- alerts


def test_alert_policy_needs_size_evidence_and_rows():
    policy = mon.AlertPolicy(alpha=0.001, min_count=20)
    assert policy.severity(0.30, 1e-5, 50) == mon.CRITICAL
    assert policy.severity(0.15, 1e-5, 50) == mon.WARNING
    assert policy.severity(0.05, 1e-5, 50) is None  # significant but negligible
    assert policy.severity(3.0, 0.2, 50) is None  # large but within chance
    assert policy.severity(3.0, 1e-9, 10) is None  # too few rows to judge
    assert policy.severity(float("nan"), 1e-9, 50) is None


def test_the_policy_alerts_every_drift_window_and_no_stable_one(tables):
    _, _, profile, drift = tables
    alerts = mon.drift_alerts(drift, profile, monitor="t", created_at="2026-07-01")
    assert list(alerts.columns) == mon._flat_names(mon.ALERT_COLUMNS)
    message = mon.check_detection(alerts, WINDOWS, "2026-06-20")
    assert message.startswith("detection ok: 11/11 drift windows") and "0/12 stable" in message
    assert set(alerts["slice_value"].dropna()) <= {"main"}
    assert (alerts["created_at"] == pd.Timestamp("2026-07-01")).all()


def test_a_rule_returning_something_else_is_refused(tables):
    _, _, profile, drift = tables
    with pytest.raises(ValueError, match="severity 'high'"):
        mon.drift_alerts(
            drift, profile, monitor="t", created_at="2026-07-01", rule=lambda r: "high"
        )


def rule_of(mistake: dict, **namespace):
    source = mistake["source"].split("\n\n\nalerts_by_monitor")[0]
    scope = {"mon": mon, "pd": pd, "np": np, **namespace}
    exec(source, scope)  # noqa: S102 (the catalogue's wrong answer, from the repository)
    return scope["severity"]


@pytest.mark.parametrize("mistake", mistakes_of("t2rule01"), ids=lambda m: m["name"])
def test_each_wrong_alert_rule_is_caught(tables, mistake):
    _, _, profile, drift = tables
    severity = rule_of(mistake, min_count=20, alpha=0.001)
    alerts = mon.drift_alerts(drift, profile, monitor="t", created_at="2026-07-01", rule=severity)
    with pytest.raises(
        AssertionError, match=mistake["caught_by"].replace("(", r"\(").replace(")", r"\)")
    ):
        mon.check_detection(alerts, WINDOWS, "2026-06-20")


def test_the_solution_rule_passes(tables):
    import nbformat

    _, _, profile, drift = tables
    nb = nbformat.read(ROOT / "solutions/05_ml/08_monitoring_and_drift.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == "t2rule01")
    severity = rule_of({"source": cell.source}, min_count=20, alpha=0.001)
    alerts = mon.drift_alerts(drift, profile, monitor="t", created_at="2026-07-01", rule=severity)
    assert mon.check_detection(alerts, WINDOWS, "2026-06-20").startswith("detection ok")


# --------------------------------------------------------------------------- PSI task


def psi_of(source: str):
    scope = {"np": np, "pd": pd, "mon": mon}
    exec(source, scope)  # noqa: S102 (the lesson's code, from the repository)
    return scope["psi"]


def test_check_psi_accepts_the_package_and_the_solution():
    import nbformat

    assert mon.check_psi(mon.psi).startswith("PSI ok")
    nb = nbformat.read(ROOT / "solutions/05_ml/08_monitoring_and_drift.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == "t1psi001")
    assert mon.check_psi(psi_of(cell.source)).startswith("PSI ok")


@pytest.mark.parametrize("mistake", mistakes_of("t1psi001"), ids=lambda m: m["name"])
def test_each_wrong_psi_is_caught(mistake):
    with pytest.raises(AssertionError, match=mistake["caught_by"]):
        mon.check_psi(psi_of(mistake["source"]))


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda b, w, bins=10: mon.psi(b, w, bins=bins) / math.log(10), "base 10"),
        (
            lambda b, w, bins=10: float(
                np.sum(
                    np.maximum(mon.binned_shares(w, mon.baseline_edges(b, bins)), mon.EPSILON)
                    * np.log(
                        np.maximum(mon.binned_shares(w, mon.baseline_edges(b, bins)), 1e-4)
                        / np.maximum(mon.binned_shares(b, mon.baseline_edges(b, bins)), 1e-4)
                    )
                )
            ),
            "KL divergence",
        ),
    ],
)
def test_check_psi_names_other_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        mon.check_psi(wrong)


# --------------------------------------------------------------------------- performance


@pytest.fixture(scope="module")
def scored():
    """Four weeks of scored payments; frauds score high, and their notices arrive 3 to 20
    days after the payment."""
    rng = np.random.default_rng(8)
    n = 2_000
    ts = pd.Timestamp("2026-06-01") + pd.to_timedelta(rng.uniform(0, 28 * 86_400, n), unit="s")
    fraud = rng.random(n) < 0.05
    score = np.clip(rng.normal(0.2, 0.15, n) + 0.4 * fraud, 0, 1)
    delay = pd.to_timedelta(rng.uniform(3, 20, n), unit="D")
    return pd.DataFrame(
        {
            "event_ts": ts,
            "score": score,
            "flagged": score >= 0.45,
            "fraud_label_ts": pd.Series(ts + delay).where(fraud),
        }
    )


PERF_WINDOWS = mon.windows("2026-06-01", "2026-06-29", "1 week")


def test_performance_only_on_mature_labels_known_at_the_refresh(scored):
    early = mon.performance_by_window(
        scored, windows=PERF_WINDOWS, as_of="2026-07-01", maturity="21 days"
    )
    assert early["labels_mature"].tolist() == [True, False, False, False]
    assert early["pr_auc"].notna().tolist() == [True, False, False, False]
    late = mon.performance_by_window(
        scored, windows=PERF_WINDOWS, as_of="2026-08-01", maturity="21 days"
    )
    assert late["labels_mature"].all() and late["pr_auc"].notna().all()
    # the last week's frauds were not all known on July 1
    assert early["frauds_known"].iloc[-1] < late["frauds_known"].iloc[-1]
    week = scored[scored["event_ts"] < pd.Timestamp("2026-06-08")]
    y = week["fraud_label_ts"].notna()
    from sklearn.metrics import average_precision_score

    assert late["pr_auc"].iloc[0] == pytest.approx(average_precision_score(y, week["score"]))
    assert late["recall"].iloc[0] == pytest.approx((week["flagged"] & y).sum() / y.sum())
    assert late["precision"].iloc[0] == pytest.approx(
        (week["flagged"] & y).sum() / week["flagged"].sum()
    )


def test_performance_needs_enough_known_frauds(scored):
    figures = mon.performance_by_window(
        scored, windows=PERF_WINDOWS, as_of="2026-08-01", maturity="0 days", min_positives=10_000
    )
    assert figures["pr_auc"].isna().all()


def performance_fn(mistake: dict, scored_pdf: pd.DataFrame):
    scope = {
        "mon": mon,
        "pd": pd,
        "scored_pdf": scored_pdf,
        "baseline_start": "2026-06-01",
        "monitor_end": "2026-06-29",
        "performance_granularity": "1 week",
        "maturity_days": 21,
    }
    exec(mistake["source"], scope)  # noqa: S102 (the catalogue's wrong answer)
    return scope["performance_as_of"]


@pytest.mark.parametrize("mistake", mistakes_of("t3perf01"), ids=lambda m: m["name"])
def test_each_wrong_performance_is_caught(scored, mistake):
    with pytest.raises(AssertionError, match=mistake["caught_by"].replace("+", r"\+")):
        mon.check_performance(
            performance_fn(mistake, scored),
            scored,
            windows=PERF_WINDOWS,
            as_of_dates=["2026-07-01", "2026-08-01"],
            maturity="21 days",
        )


def test_check_performance_accepts_the_package(scored):
    def right(as_of):
        return mon.performance_by_window(
            scored, windows=PERF_WINDOWS, as_of=as_of, maturity="21 days"
        )

    message = mon.check_performance(
        right, scored, windows=PERF_WINDOWS, as_of_dates=["2026-07-01"], maturity="21 days"
    )
    assert message.startswith("performance ok")


def test_the_catalogue_covers_every_task_with_two_mistakes():
    import nbformat

    nb = nbformat.read(ROOT / "solutions/05_ml/08_monitoring_and_drift.ipynb", as_version=4)
    tasks = {c["id"] for c in nb.cells if "# BEGIN SOLUTION" in c.source}
    assert tasks == {m["task_cell"] for m in MISTAKES}
    assert all(len(mistakes_of(t)) >= 2 for t in tasks)
    assert not (ROOT / "05_ml/08_monitoring_and_drift.mistakes.json").exists()


# --------------------------------------------------------------------------- tables in Spark


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "ml_monitoring_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


def test_to_spark_builds_databricks_structs(spark, tables):
    _, _, profile, drift = tables
    drift_df = mon.to_spark(spark, drift.head(40), mon.DRIFT_COLUMNS)
    assert drift_df.columns == list(mon.DRIFT_COLUMNS)
    fields = {f.name: f.dataType.simpleString() for f in drift_df.schema.fields}
    assert fields["window"] == "struct<start:timestamp,end:timestamp>"
    assert fields["ks_test"] == "struct<statistic:double,pvalue:double>"
    assert fields["count_delta"] == "bigint"
    rows = drift_df.where("drift_type = 'CONSECUTIVE'").collect()
    assert all(r["window_cmp"]["start"] is not None for r in rows)
    profile_df = mon.to_spark(spark, profile.head(40), mon.PROFILE_COLUMNS)
    assert (
        dict((f.name, f.dataType.simpleString()) for f in profile_df.schema.fields)["quantiles"]
        == "array<double>"
    )
    assert profile_df.count() == 40
