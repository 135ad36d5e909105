"""Monitoring a model and its data over time: profile and drift metric tables with the columns
of Databricks Lakehouse Monitoring's output tables, the drift statistics behind them (PSI,
Kolmogorov-Smirnov, Jensen-Shannon, chi-square, Wasserstein), an alert rule that asks for a
large shift *and* evidence beyond chance, performance measured only where labels have matured,
and the checks lesson 05_ml/08 calls.

Example::

    from lakehouse.ml import monitoring as mon

    windows = mon.windows("2026-06-08", "2026-07-01", "1 day")
    drift_pdf = mon.drift_metrics(attempts_pdf, baseline_pdf, time="attempt_ts",
                                  numeric=["latency_ms"], categorical=["response_code"],
                                  windows=windows, granularity="1 day", slice_by="processor")
    profile_pdf = mon.profile_metrics(attempts_pdf, time="attempt_ts", columns=[...], ...)
    alerts_pdf = mon.drift_alerts(drift_pdf, profile_pdf, monitor="payments.attempts",
                                  policy=mon.AlertPolicy(), created_at=as_of)

The statistics and tables are plain pandas, numpy and scipy (a month of payments is small);
:func:`write_metrics` turns a frame into the Delta table with Databricks' struct columns.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from lakehouse.ml.training import LABEL_TIME

# --------------------------------------------------------------------------- names

SCORES_TABLE = "gold.fraud_scores"
FRAUD_PROFILE_TABLE = "ml.fraud_scores_profile_metrics"
FRAUD_DRIFT_TABLE = "ml.fraud_scores_drift_metrics"
ATTEMPTS_PROFILE_TABLE = "ml.payment_attempts_profile_metrics"
ATTEMPTS_DRIFT_TABLE = "ml.payment_attempts_drift_metrics"
ALERTS_TABLE = "ml.monitoring_alerts"

BASELINE = "BASELINE"
CONSECUTIVE = "CONSECUTIVE"
INPUT = "INPUT"
TABLE_COLUMN = ":table"  # the column_name of a row about the whole table (Databricks' name)

# PSI's usual bands: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a major one.
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25
# What an empty bin's share becomes before the logarithm (PSI is infinite without it).
EPSILON = 1e-4
BINS = 10
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

# The columns computed, in the order and with the names of Databricks' tables (a subset: see
# the lesson). window and window_cmp are struct<start, end>; ks_test and chi_squared_test are
# struct<statistic, pvalue>. The flat frames here carry them as <name>_start/_end and
# <name>_statistic/_pvalue; write_metrics builds the structs.
PROFILE_COLUMNS = (
    "window",
    "granularity",
    "model_version",  # the monitor's model_id_col (InferenceLog only; null otherwise)
    "log_type",
    "slice_key",
    "slice_value",
    "column_name",
    "data_type",
    "count",
    "num_nulls",
    "percent_null",
    "avg",
    "stddev",
    "min",
    "max",
    "median",
    "quantiles",
    "distinct_count",
    # custom metrics on the :table rows of an inference monitor (labels as known at as_of)
    "labels_mature",
    "frauds_known",
    "pr_auc",
    "recall",
    "precision",
)
DRIFT_COLUMNS = (
    "window",
    "granularity",
    "model_version",
    "slice_key",
    "slice_value",
    "column_name",
    "data_type",
    "window_cmp",
    "drift_type",
    "count_delta",
    "avg_delta",
    "percent_null_delta",
    "js_distance",
    "ks_test",
    "wasserstein_distance",
    "population_stability_index",
    "chi_squared_test",
    "tv_distance",
)
ALERT_COLUMNS = (
    "monitor",
    "window",
    "drift_type",
    "slice_key",
    "slice_value",
    "column",
    "metric",
    "value",
    "threshold",
    "severity",
    "message",
    "created_at",
)
STRUCTS = {
    "window": ("start", "end"),
    "window_cmp": ("start", "end"),
    "ks_test": ("statistic", "pvalue"),
    "chi_squared_test": ("statistic", "pvalue"),
}


# --------------------------------------------------------------------------- windows

_GRANULARITY = re.compile(r"^\s*(\d+)\s+(minute|hour|day|week)s?\s*$")


def window_length(granularity: str) -> pd.Timedelta:
    """``"1 day"``, ``"2 days"``, ``"1 week"``, ``"1 hour"``... as a Timedelta."""
    match = _GRANULARITY.match(str(granularity))
    if not match:
        raise ValueError(
            f"granularity {granularity!r}: give '<n> minute(s)|hour(s)|day(s)|week(s)', "
            "e.g. '1 day' or '1 week' (Databricks' monitors take the same strings)"
        )
    n, unit = int(match.group(1)), match.group(2)
    if n <= 0:
        raise ValueError(f"granularity {granularity!r}: the number must be positive")
    return pd.Timedelta(**{f"{unit}s": n})


def windows(start, end, granularity: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Consecutive ``[start, end)`` windows of ``granularity`` from ``start``; the last one
    ends at or after ``end``."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if end <= start:
        raise ValueError(f"end {end} is not after start {start}: give a period to monitor")
    length = window_length(granularity)
    count = math.ceil((end - start) / length)
    return [(start + i * length, start + (i + 1) * length) for i in range(count)]


def _in(frame: pd.DataFrame, time: str, start, end) -> pd.DataFrame:
    ts = pd.to_datetime(frame[time])
    return frame[(ts >= start) & (ts < end)]


# --------------------------------------------------------------------------- statistics


def _values(values) -> np.ndarray:
    """Non-null values as a float array (booleans as 0/1)."""
    series = pd.Series(values)
    return series.dropna().to_numpy(dtype="float64")


def baseline_edges(baseline, bins: int = BINS) -> np.ndarray:
    """The inner bin edges of PSI: the baseline's quantiles at 1/bins, 2/bins... (duplicates
    dropped, so a column with few values gets fewer bins). Cut once, from the baseline, so
    every window is measured on the same bins."""
    if bins < 2:
        raise ValueError(f"bins={bins}: PSI needs at least 2 bins")
    values = _values(baseline)
    if values.size == 0:
        raise ValueError("the baseline is empty: PSI needs baseline values to cut bins from")
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def binned_shares(values, edges: np.ndarray) -> np.ndarray:
    """The share of ``values`` in each bin ``(-inf, e0), [e0, e1), ..., [e_last, inf)``."""
    values = _values(values)
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)
    return counts / values.size if values.size else counts.astype("float64")


def category_shares(baseline, window) -> tuple[list, np.ndarray, np.ndarray]:
    """The categories of both (a category unseen in the baseline included) and the share of
    each in the baseline and in the window."""
    b = pd.Series(baseline).dropna().astype(str)
    w = pd.Series(window).dropna().astype(str)
    categories = sorted(set(b) | set(w))
    b_counts = b.value_counts().reindex(categories, fill_value=0).to_numpy(dtype="float64")
    w_counts = w.value_counts().reindex(categories, fill_value=0).to_numpy(dtype="float64")
    return (
        categories,
        b_counts / b_counts.sum() if b_counts.sum() else b_counts,
        w_counts / w_counts.sum() if w_counts.sum() else w_counts,
    )


def psi_from_shares(expected, actual, *, eps: float = EPSILON) -> float:
    """``sum((actual - expected) * ln(actual / expected))`` with empty shares raised to
    ``eps``."""
    e = np.maximum(np.asarray(expected, dtype="float64"), eps)
    a = np.maximum(np.asarray(actual, dtype="float64"), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(baseline, window, *, bins: int = BINS, eps: float = EPSILON) -> float:
    """Population stability index of a numeric column: bins from the baseline's quantiles
    (:func:`baseline_edges`), shares per bin, :func:`psi_from_shares`. NaN for an empty
    window."""
    if _values(window).size == 0:
        return float("nan")
    edges = baseline_edges(baseline, bins)
    return psi_from_shares(binned_shares(baseline, edges), binned_shares(window, edges), eps=eps)


def psi_categorical(baseline, window, *, eps: float = EPSILON) -> float:
    """PSI of a categorical column, one bin per category. NaN for an empty window."""
    if pd.Series(window).dropna().empty:
        return float("nan")
    _, b, w = category_shares(baseline, window)
    return psi_from_shares(b, w, eps=eps)


def ks_test(baseline, window) -> tuple[float, float]:
    """The two-sample Kolmogorov-Smirnov statistic (the largest gap between the two empirical
    CDFs, 0 to 1) and its p-value (scipy). NaNs for an empty window."""
    b, w = _values(baseline), _values(window)
    if b.size == 0 or w.size == 0:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        # scipy falls back from the exact p-value to the asymptotic one on some sizes: fine
        warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful")
        result = stats.ks_2samp(b, w)
    return float(result.statistic), float(result.pvalue)


def js_distance(baseline, window, *, bins: int | None = BINS) -> float:
    """Jensen-Shannon distance (base 2: 0 identical, 1 disjoint) between the two
    distributions: over the baseline's quantile bins for a numeric column (``bins``), over the
    categories for a categorical one (``bins=None``). NaN for an empty window."""
    if pd.Series(window).dropna().empty:
        return float("nan")
    if bins is None:
        _, b, w = category_shares(baseline, window)
    else:
        edges = baseline_edges(baseline, bins)
        b, w = binned_shares(baseline, edges), binned_shares(window, edges)
    return float(jensenshannon(b, w, base=2))


def tv_distance(baseline, window) -> float:
    """Total variation distance between the category shares: half the sum of the absolute
    differences (0 to 1)."""
    if pd.Series(window).dropna().empty:
        return float("nan")
    _, b, w = category_shares(baseline, window)
    return float(np.abs(b - w).sum() / 2)


def wasserstein(baseline, window) -> float:
    """Wasserstein (earth mover's) distance, in the column's unit (scipy)."""
    b, w = _values(baseline), _values(window)
    if b.size == 0 or w.size == 0:
        return float("nan")
    return float(stats.wasserstein_distance(b, w))


def chi_squared_test(baseline, window, *, min_expected: float = 5.0) -> tuple[float, float]:
    """Pearson's chi-square test that the window's categories come from the same distribution
    as the baseline's: a 2 x k contingency table (scipy's ``chi2_contingency``). Categories
    whose expected count in either row is below ``min_expected`` are pooled into one cell
    first (the test's approximation needs about 5 per cell; sparse cells give p-values far too
    small). A category unseen in the baseline counts like any other. Returns (statistic,
    p-value); (0, 1) when fewer than two cells remain (a constant column); NaNs for an empty
    window."""
    b = pd.Series(baseline).dropna().astype(str)
    w = pd.Series(window).dropna().astype(str)
    if b.empty or w.empty:
        return float("nan"), float("nan")
    table = pd.DataFrame({"baseline": b.value_counts(), "window": w.value_counts()}).fillna(0)
    total = table.to_numpy().sum()
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    sparse = (expected < min_expected).any(axis=1)
    if sparse.any():
        pooled = table[sparse].sum().rename("(pooled)").to_frame().T
        table = pd.concat([table[~sparse], pooled]) if (~sparse).any() else pooled
    table = table[table.sum(axis=1) > 0]
    if len(table) < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(table.to_numpy().T, correction=False)
    return float(result.statistic), float(result.pvalue)


def psi_noise(n_window: int, n_baseline: int, bins: int = BINS, *, quantile: float = 0.99):
    """The PSI that chance alone reaches with probability ``1 - quantile`` when nothing has
    changed: for small shifts PSI is close to the chi-square divergence, so
    ``PSI ~ chi2(bins - 1) * (1/n_window + 1/n_baseline)``. It falls with the sample sizes:
    PSI's bands (0.1, 0.25) were set for thousands of rows."""
    if n_window <= 0 or n_baseline <= 0:
        return float("inf")
    return float(stats.chi2.ppf(quantile, bins - 1) * (1 / n_window + 1 / n_baseline))


def minimum_count(
    bins: int = BINS,
    threshold: float = PSI_MAJOR,
    n_baseline: int | None = None,
    *,
    quantile: float = 0.99,
) -> int:
    """The smallest window whose no-change PSI stays below ``threshold`` with probability
    ``quantile`` (:func:`psi_noise`), for a baseline of ``n_baseline`` rows (None: an
    unlimited one)."""
    room = threshold / stats.chi2.ppf(quantile, bins - 1)
    if n_baseline is not None:
        room -= 1 / n_baseline
    if room <= 0:
        raise ValueError(
            f"a baseline of {n_baseline} rows alone brings PSI's noise above {threshold} with "
            f"{bins} bins: take a longer baseline or fewer bins"
        )
    return math.ceil(1 / room)


# --------------------------------------------------------------------------- profile metrics


def _data_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "bigint"
    if pd.api.types.is_float_dtype(series):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "timestamp"
    return "string"


def is_numeric(series: pd.Series) -> bool:
    """Numeric columns get quantiles, KS, PSI on bins; the others (strings, booleans) are
    categorical: chi-square and PSI per category."""
    return _data_type(series) in ("bigint", "double")


def _slices(frame: pd.DataFrame, slice_by: str | None):
    """(slice_key, slice_value, rows): the whole frame first, then one slice per value."""
    yield None, None, frame
    if slice_by is not None:
        values = frame[slice_by].dropna().astype(str)
        for value in sorted(values.unique()):
            yield slice_by, value, frame[values.reindex(frame.index) == value]


def _column_profile(values: pd.Series) -> dict:
    n = len(values)
    nulls = int(values.isna().sum())
    row = {
        "data_type": _data_type(values),
        "count": n,
        "num_nulls": nulls,
        "percent_null": 100.0 * nulls / n if n else None,
        "distinct_count": int(values.nunique(dropna=True)),
    }
    present = values.dropna()
    if is_numeric(values) and len(present):
        x = present.to_numpy(dtype="float64")
        row.update(
            avg=float(x.mean()),
            stddev=float(x.std(ddof=1)) if x.size > 1 else None,
            min=float(x.min()),
            max=float(x.max()),
            median=float(np.median(x)),
            quantiles=[float(q) for q in np.quantile(x, QUANTILES)],
        )
    elif _data_type(values) == "boolean" and len(present):
        row["avg"] = float(present.astype(float).mean())
    return row


def profile_metrics(
    frame: pd.DataFrame,
    *,
    time: str,
    columns: Sequence[str],
    windows: Sequence[tuple],
    granularity: str,
    slice_by: str | None = None,
    model_version: int | None = None,
    baseline: pd.DataFrame | None = None,
    performance: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The profile metrics table (:data:`PROFILE_COLUMNS`, flat): per window, slice (the whole
    table first: slice_key and slice_value null) and column, the count, nulls, mean, spread,
    quantiles (at :data:`QUANTILES`) and distinct values; a ``:table`` row per window and
    slice with the row count and, for an inference monitor, the ``performance`` figures of
    :func:`performance_by_window` for that window. ``baseline`` adds its own rows
    (``log_type`` BASELINE, window and granularity null)."""
    _require_columns(frame, [time, *columns, *([slice_by] if slice_by else [])], "frame")
    rows = []
    periods = [(INPUT, start, end, _in(frame, time, start, end)) for start, end in windows]
    if baseline is not None:
        periods.insert(0, (BASELINE, None, None, baseline))
    perf = {} if performance is None else performance.set_index("window_start").to_dict("index")
    for log_type, start, end, rows_in in periods:
        for slice_key, slice_value, part in _slices(rows_in, slice_by):
            base = {
                "window_start": start,
                "window_end": end,
                "granularity": granularity if log_type == INPUT else None,
                "model_version": model_version,
                "log_type": log_type,
                "slice_key": slice_key,
                "slice_value": slice_value,
            }
            table_row = {**base, "column_name": TABLE_COLUMN, "count": len(part)}
            if log_type == INPUT and slice_key is None and start in perf:
                figures = perf[start]
                table_row.update({k: figures.get(k) for k in PERFORMANCE_COLUMNS})
            rows.append(table_row)
            for column in columns:
                rows.append({**base, "column_name": column, **_column_profile(part[column])})
    return _frame(rows, PROFILE_COLUMNS)


def _flat_names(columns: Sequence[str]) -> list[str]:
    names = []
    for column in columns:
        names += (
            [f"{column}_{field}" for field in STRUCTS[column]] if column in STRUCTS else [column]
        )
    return names


def _frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=_flat_names(columns)).astype(
        {c: "object" for c in ("quantiles",) if c in _flat_names(columns)}
    )


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} has no column {', '.join(map(repr, missing))}: it has "
            f"{', '.join(frame.columns)}"
        )


# --------------------------------------------------------------------------- drift metrics


def column_drift(reference: pd.Series, current: pd.Series, *, bins: int = BINS) -> dict:
    """Every drift statistic of one column between a reference (the baseline, or the previous
    window) and the current window, named as in Databricks' drift table (flat)."""
    n_ref, n_cur = len(reference), len(current)
    row = {
        "count_delta": n_cur - n_ref,
        "percent_null_delta": (
            100.0 * (current.isna().mean() - reference.isna().mean()) if n_ref and n_cur else None
        ),
    }
    if current.dropna().empty or reference.dropna().empty:
        return row
    if is_numeric(reference):
        statistic, pvalue = ks_test(reference, current)
        row.update(
            avg_delta=float(_values(current).mean() - _values(reference).mean()),
            ks_test_statistic=statistic,
            ks_test_pvalue=pvalue,
            population_stability_index=psi(reference, current, bins=bins),
            js_distance=js_distance(reference, current, bins=bins),
            wasserstein_distance=wasserstein(reference, current),
        )
    else:
        statistic, pvalue = chi_squared_test(reference, current)
        row.update(
            chi_squared_test_statistic=statistic,
            chi_squared_test_pvalue=pvalue,
            population_stability_index=psi_categorical(reference, current),
            js_distance=js_distance(reference, current, bins=None),
            tv_distance=tv_distance(reference, current),
        )
        if _data_type(reference) == "boolean":
            row["avg_delta"] = float(current.dropna().astype(float).mean()) - float(
                reference.dropna().astype(float).mean()
            )
    return row


def drift_metrics(
    frame: pd.DataFrame,
    baseline: pd.DataFrame | None,
    *,
    time: str,
    columns: Sequence[str],
    windows: Sequence[tuple],
    granularity: str,
    slice_by: str | None = None,
    model_version: int | None = None,
    drift_types: Sequence[str] = (BASELINE, CONSECUTIVE),
    bins: int = BINS,
) -> pd.DataFrame:
    """The drift metrics table (:data:`DRIFT_COLUMNS`, flat): per window, slice and column,
    the statistics of :func:`column_drift` against the ``baseline`` (``drift_type``
    BASELINE, ``window_cmp`` null) and against the previous window (CONSECUTIVE). A numeric
    column gets KS, PSI on the reference's quantile bins, JS distance and Wasserstein; a
    categorical one chi-square, PSI per category, JS and total variation distance."""
    unknown = set(drift_types) - {BASELINE, CONSECUTIVE}
    if unknown:
        raise ValueError(f"drift_types {sorted(unknown)}: use {BASELINE!r} and {CONSECUTIVE!r}")
    if BASELINE in drift_types and baseline is None:
        raise ValueError("BASELINE drift needs a baseline frame: pass baseline=...")
    _require_columns(frame, [time, *columns, *([slice_by] if slice_by else [])], "frame")
    if baseline is not None:
        _require_columns(baseline, [*columns, *([slice_by] if slice_by else [])], "baseline")
    base_slices = (
        {(k, v): part for k, v, part in _slices(baseline, slice_by)} if baseline is not None else {}
    )
    rows, previous = [], None
    for start, end in windows:
        current = {(k, v): part for k, v, part in _slices(_in(frame, time, start, end), slice_by)}
        for (slice_key, slice_value), part in current.items():
            references = []
            if BASELINE in drift_types and (slice_key, slice_value) in base_slices:
                references.append((BASELINE, None, None, base_slices[(slice_key, slice_value)]))
            if CONSECUTIVE in drift_types and previous is not None:
                p_start, p_end, p_parts = previous
                if (slice_key, slice_value) in p_parts:
                    references.append(
                        (CONSECUTIVE, p_start, p_end, p_parts[(slice_key, slice_value)])
                    )
            for drift_type, cmp_start, cmp_end, reference in references:
                base = {
                    "window_start": start,
                    "window_end": end,
                    "granularity": granularity,
                    "model_version": model_version,
                    "slice_key": slice_key,
                    "slice_value": slice_value,
                    "window_cmp_start": cmp_start,
                    "window_cmp_end": cmp_end,
                    "drift_type": drift_type,
                }
                rows.append(
                    {
                        **base,
                        "column_name": TABLE_COLUMN,
                        "count_delta": len(part) - len(reference),
                    }
                )
                for column in columns:
                    rows.append(
                        {
                            **base,
                            "column_name": column,
                            "data_type": _data_type(reference[column]),
                            **column_drift(reference[column], part[column], bins=bins),
                        }
                    )
        previous = (start, end, current)
    return _frame(rows, DRIFT_COLUMNS)


# --------------------------------------------------------------------------- performance

PERFORMANCE_COLUMNS = ("labels_mature", "frauds_known", "pr_auc", "recall", "precision")


def performance_by_window(
    frame: pd.DataFrame,
    *,
    windows: Sequence[tuple],
    as_of,
    maturity: pd.Timedelta | str,
    time: str = "event_ts",
    score: str = "score",
    flagged: str = "flagged",
    label_time: str = LABEL_TIME,
    min_positives: int = 5,
) -> pd.DataFrame:
    """The model's performance per window, as someone looking at ``as_of`` can know it: a
    payment is fraud when its fraud notice arrived by ``as_of`` (``label_time <= as_of``),
    and a window's figures are computed only once every notice can have arrived
    (``window end + maturity <= as_of``: ``labels_mature``) and it holds at least
    ``min_positives`` known frauds; otherwise they are null. PR-AUC is the average precision
    of ``score``; recall and precision are those of ``flagged``."""
    from sklearn.metrics import average_precision_score

    _require_columns(frame, [time, score, flagged, label_time], "frame")
    as_of, maturity = pd.Timestamp(as_of), pd.Timedelta(maturity)
    label_ts = pd.to_datetime(frame[label_time])
    known = (label_ts.notna() & (label_ts <= as_of)).to_numpy()
    ts = pd.to_datetime(frame[time])
    rows = []
    for start, end in windows:
        inside = ((ts >= start) & (ts < end)).to_numpy()
        y = known[inside]
        mature = bool(end + maturity <= as_of)
        row = {
            "window_start": start,
            "window_end": end,
            "count": int(inside.sum()),
            "labels_mature": mature,
            "frauds_known": int(y.sum()),
            "pr_auc": None,
            "recall": None,
            "precision": None,
        }
        if mature and y.sum() >= min_positives and (~y.astype(bool)).any():
            flags = frame[flagged].to_numpy()[inside].astype(bool)
            row["pr_auc"] = float(average_precision_score(y, frame[score].to_numpy()[inside]))
            row["recall"] = float((flags & y).sum() / y.sum())
            row["precision"] = float((flags & y).sum() / flags.sum()) if flags.any() else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- alerts

CRITICAL = "critical"
WARNING = "warning"


@dataclass(frozen=True)
class AlertPolicy:
    """When a drift row becomes an alert: the shift is **large** (PSI at or above a band)
    **and** beyond chance (the test's p-value below ``alpha``: KS for a numeric column,
    chi-square for a categorical one), in a window of at least ``min_count`` rows, against
    the baseline. PSI alone false-alarms on small windows (its noise is
    ``chi2(bins - 1) * (1/n + 1/m)``, :func:`psi_noise`); a p-value alone flags negligible
    shifts on large ones. ``PSI_MAJOR`` makes a critical alert, ``PSI_MODERATE`` a warning."""

    psi_moderate: float = PSI_MODERATE
    psi_major: float = PSI_MAJOR
    alpha: float = 0.001
    min_count: int = 30
    drift_type: str = BASELINE

    def severity(self, psi_value, pvalue, count) -> str | None:
        """CRITICAL, WARNING or None for one drift row."""
        if psi_value is None or pvalue is None or count is None:
            return None
        if not (np.isfinite(psi_value) and np.isfinite(pvalue)) or count < self.min_count:
            return None
        if pvalue >= self.alpha:
            return None
        if psi_value >= self.psi_major:
            return CRITICAL
        if psi_value >= self.psi_moderate:
            return WARNING
        return None


def window_counts(profile_pdf: pd.DataFrame) -> pd.DataFrame:
    """Rows per window and slice, from the profile's ``:table`` rows (log_type INPUT)."""
    table_rows = profile_pdf[
        (profile_pdf["column_name"] == TABLE_COLUMN) & (profile_pdf["log_type"] == INPUT)
    ]
    return table_rows[["window_start", "slice_key", "slice_value", "count"]]


def _test_pvalue(row) -> float | None:
    for name in ("ks_test_pvalue", "chi_squared_test_pvalue"):
        value = row.get(name)
        if value is not None and not pd.isna(value):
            return float(value)
    return None


def drift_rows(drift_pdf: pd.DataFrame, profile_pdf: pd.DataFrame) -> list[dict]:
    """The drift table's column rows (``:table`` rows left out) as dicts, each with the
    window's row ``count`` (from the profile) and ``test_pvalue``: the KS p-value of a
    numeric column, the chi-square one of a categorical column."""
    rows = drift_pdf[drift_pdf["column_name"] != TABLE_COLUMN].merge(
        window_counts(profile_pdf), on=["window_start", "slice_key", "slice_value"], how="left"
    )
    records = rows.to_dict("records")
    for row in records:
        row["test_pvalue"] = _test_pvalue(row)
        row["test"] = "KS" if not pd.isna(row.get("ks_test_pvalue")) else "chi-square"
        for key in ("slice_key", "slice_value"):
            row[key] = None if pd.isna(row[key]) else row[key]
    return records


def drift_alerts(
    drift_pdf: pd.DataFrame,
    profile_pdf: pd.DataFrame,
    *,
    monitor: str,
    created_at,
    policy: AlertPolicy = AlertPolicy(),
    rule: Callable[[dict], str | None] | None = None,
) -> pd.DataFrame:
    """The alerts (:data:`ALERT_COLUMNS`, flat) raised on the drift table's rows: by
    ``policy`` on its rows of ``policy.drift_type``, or by ``rule``, a function of one row of
    :func:`drift_rows` (every drift type) that returns :data:`CRITICAL`, :data:`WARNING` or
    None. ``created_at`` is the refresh's moment (a rerun of the same refresh writes the same
    rows)."""
    alerts = []
    for row in drift_rows(drift_pdf, profile_pdf):
        psi_value, pvalue = row.get("population_stability_index"), row["test_pvalue"]
        if rule is not None:
            severity = rule(row)
        elif row["drift_type"] == policy.drift_type:
            severity = policy.severity(psi_value, pvalue, row.get("count"))
        else:
            severity = None
        if severity is None:
            continue
        if severity not in (CRITICAL, WARNING):
            raise ValueError(f"severity {severity!r}: return {CRITICAL!r}, {WARNING!r} or None")
        band = policy.psi_major if severity == CRITICAL else policy.psi_moderate
        where = f" [{row['slice_key']}={row['slice_value']}]" if row["slice_key"] else ""
        compared = "baseline" if row["drift_type"] == BASELINE else "previous window"
        alerts.append(
            {
                "monitor": monitor,
                "window_start": row["window_start"],
                "window_end": row["window_end"],
                "drift_type": row["drift_type"],
                "slice_key": row["slice_key"],
                "slice_value": row["slice_value"],
                "column": row["column_name"],
                "metric": "population_stability_index",
                "value": psi_value,
                "threshold": float(band),
                "severity": severity,
                "message": (
                    f"{row['column_name']}{where} {row['window_start']:%Y-%m-%d}: PSI "
                    f"{_num(psi_value, '.2f')} against the {compared} "
                    f"({_count_text(row.get('count'))}, {row['test']} p = {_num(pvalue, '.1e')})"
                ),
                "created_at": pd.Timestamp(created_at),
            }
        )
    return _frame(alerts, ALERT_COLUMNS)


def _num(value, spec: str) -> str:
    return "null" if value is None or pd.isna(value) else format(float(value), spec)


def _count_text(count) -> str:
    return "rows unknown" if count is None or pd.isna(count) else f"{int(count)} rows"


def alerted_windows(alerts_pdf: pd.DataFrame, severity: str | None = None) -> list[pd.Timestamp]:
    """The start of every window with at least one alert (of ``severity``, or any)."""
    rows = alerts_pdf if severity is None else alerts_pdf[alerts_pdf["severity"] == severity]
    return sorted(pd.to_datetime(rows["window_start"]).unique())


_FLAT_TYPES = {
    "timestamp": ("window_start", "window_end", "window_cmp_start", "window_cmp_end", "created_at"),
    "int": ("model_version",),
    "bigint": ("count", "num_nulls", "distinct_count", "frauds_known", "count_delta"),
    "boolean": ("labels_mature",),
    "array<double>": ("quantiles",),
    "string": (
        "granularity", "log_type", "slice_key", "slice_value", "column_name", "data_type",
        "drift_type", "monitor", "column", "metric", "severity", "message",
    ),
}  # fmt: skip


def flat_schema(columns: Sequence[str]):
    """The Spark schema of a flat frame of this module (every other column is a double)."""
    from pyspark.sql.types import StructType, _parse_datatype_string

    type_of = {name: kind for kind, names in _FLAT_TYPES.items() for name in names}
    schema = StructType()
    for name in _flat_names(columns):
        schema.add(name, _parse_datatype_string(type_of.get(name, "double")))
    return schema


_PANDAS_TYPES = {"integer": "Int32", "long": "Int64", "double": "float64", "boolean": "boolean"}


def _list_or_none(value):
    if isinstance(value, list | tuple | np.ndarray):
        return [float(v) for v in value]
    return None


def to_spark(spark, flat_pdf: pd.DataFrame, columns: Sequence[str]):
    """A flat frame of this module as a Spark DataFrame with Databricks' columns: the
    ``<name>_start/_end`` and ``<name>_statistic/_pvalue`` pairs folded into structs. The
    frame goes through Arrow with explicit types (nullable integers, booleans)."""
    from pyspark.sql import functions as F

    schema = flat_schema(columns)
    frame = flat_pdf.reindex(columns=schema.fieldNames())
    typed = {}
    for field in schema.fields:
        kind = field.dataType.typeName()
        values = frame[field.name]
        if kind == "timestamp":
            typed[field.name] = pd.to_datetime(values)
        elif kind == "array":
            typed[field.name] = values.map(_list_or_none).astype(object)
        elif kind == "string":
            typed[field.name] = values.astype(object).where(values.notna(), None)
        else:
            typed[field.name] = pd.array(
                values.astype(object).where(values.notna(), None), dtype=_PANDAS_TYPES[kind]
            )
    df = spark.createDataFrame(pd.DataFrame(typed), schema)
    select = []
    for column in columns:
        if column in STRUCTS:
            fields = [F.col(f"{column}_{f}").alias(f) for f in STRUCTS[column]]
            select.append(F.struct(*fields).alias(column))
        else:
            select.append(F.col(column))
    return df.select(*select)


def write_metrics(spark, flat_pdf: pd.DataFrame, table: str, columns: Sequence[str]) -> str:
    """Replace ``table`` (Delta) with ``flat_pdf`` in Databricks' columns (:func:`to_spark`):
    a monitor's refresh recomputes its metric tables, so a rerun writes the same rows.
    Returns the table's name."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    (
        to_spark(spark, flat_pdf, columns)
        .write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .saveAsTable(table)
    )
    return table


# --------------------------------------------------------------------------- checks


def _close(a, b, tolerance: float = 1e-9) -> bool:
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tolerance * max(1.0, abs(b))


def _psi_variants(baseline, window, bins: int) -> dict[str, float]:
    """PSI computed the classic wrong ways, to name the one a learner's value matches."""
    b, w = _values(baseline), _values(window)
    inner = np.linspace(0, 1, bins + 1)[1:-1]
    window_edges = np.unique(np.quantile(w, inner))
    pooled_edges = np.unique(np.quantile(np.concatenate([b, w]), inner))
    equal_edges = np.linspace(min(b.min(), w.min()), max(b.max(), w.max()), bins + 1)[1:-1]
    shares = {
        "window": (binned_shares(b, window_edges), binned_shares(w, window_edges)),
        "pooled": (binned_shares(b, pooled_edges), binned_shares(w, pooled_edges)),
        "equal": (binned_shares(b, equal_edges), binned_shares(w, equal_edges)),
    }
    variants = {name: psi_from_shares(e, a) for name, (e, a) in shares.items()}
    edges = baseline_edges(b, bins)
    e, a = binned_shares(b, edges), binned_shares(w, edges)
    variants["log10"] = float(
        np.sum(
            (np.maximum(a, EPSILON) - np.maximum(e, EPSILON))
            * np.log10(np.maximum(a, EPSILON) / np.maximum(e, EPSILON))
        )
    )
    variants["kl"] = float(
        np.sum(np.maximum(a, EPSILON) * np.log(np.maximum(a, EPSILON) / np.maximum(e, EPSILON)))
    )
    return variants


_PSI_MISTAKES = {
    "window": (
        "the bins were cut from the window's quantiles: each window then sits on its own bins, "
        "uniform by construction, and no two windows are comparable; cut the bins once from "
        "the baseline's quantiles"
    ),
    "pooled": (
        "the bins were cut from the baseline and the window together: the drifted rows move "
        "the edges towards themselves and hide part of the shift; cut them from the baseline "
        "alone"
    ),
    "equal": (
        "the bins are of equal width over the range: a few outliers stretch the range and "
        "most rows fall in one or two bins; cut them at the baseline's quantiles"
    ),
    "log10": "the logarithm is base 10: PSI and its bands (0.1, 0.25) use the natural log",
    "kl": (
        "this is the KL divergence sum(a * ln(a / e)), not PSI: PSI is "
        "sum((a - e) * ln(a / e)), symmetric in the two shares"
    ),
}


def check_psi(psi_fn, *, bins: int = BINS, seed: int = 7) -> str:
    """Check a learner's ``psi_fn(baseline, window, bins=...)`` against :func:`psi` on a
    shifted window, on a window that leaves bins empty (the epsilon must keep PSI finite) and
    on an unchanged one, naming the classic mistake a wrong value matches."""
    rng = np.random.default_rng(seed)
    baseline = rng.lognormal(5.5, 0.35, 3_000)
    cases = {
        "a window 30% slower": rng.lognormal(5.5, 0.35, 600) * 1.3,
        "a window that leaves bins empty": rng.lognormal(5.5, 0.05, 400) * 1.6,
        "an unchanged window": rng.lognormal(5.5, 0.35, 600),
    }
    for label, window in cases.items():
        got = psi_fn(baseline, window, bins=bins)
        expected = psi(baseline, window, bins=bins)
        if got is None or not np.isfinite(float(got)):
            raise AssertionError(
                f"PSI on {label} is {got}: an empty bin has share 0 and ln(0) is -inf; raise "
                f"every share to a small epsilon ({EPSILON}) before the logarithm"
            )
        if _close(got, expected, 1e-6):
            continue
        for name, value in _psi_variants(baseline, window, bins).items():
            if _close(got, value, 1e-6):
                raise AssertionError(f"PSI on {label} is {float(got):.4f}: {_PSI_MISTAKES[name]}")
        raise AssertionError(
            f"PSI on {label} is {float(got):.4f}, expected {expected:.4f}: bins from the "
            f"baseline's quantiles at 1/{bins}, 2/{bins}, ..., shares per bin raised to "
            f"{EPSILON}, then sum((window - baseline) * ln(window / baseline))"
        )
    shifted = psi(baseline, cases["a window 30% slower"], bins=bins)
    return f"PSI ok: {shifted:.2f} for a window 30% slower, finite with empty bins"


def detection(alerts_pdf: pd.DataFrame, windows: Sequence[tuple], drift_start) -> dict:
    """Which windows alerted, split at ``drift_start``: the drift's windows (should all
    alert) and the stable ones before it (should not)."""
    drift_start = pd.Timestamp(drift_start)
    alerted = set(alerted_windows(alerts_pdf))
    starts = [pd.Timestamp(start) for start, _ in windows]
    drifted = [s for s in starts if s >= drift_start]
    stable = [s for s in starts if s < drift_start]
    return {
        "drift_windows": drifted,
        "stable_windows": stable,
        "detected": [s for s in drifted if s in alerted],
        "missed": [s for s in drifted if s not in alerted],
        "false_alarms": [s for s in stable if s in alerted],
    }


def _days(stamps: Iterable[pd.Timestamp]) -> str:
    return ", ".join(f"{s:%m-%d}" for s in stamps) or "none"


def check_detection(
    alerts_pdf: pd.DataFrame,
    windows: Sequence[tuple],
    drift_start,
    *,
    policy: AlertPolicy = AlertPolicy(),
) -> str:
    """Every window from ``drift_start`` on has an alert and no window before it has one;
    otherwise say which windows and which classic mistake the alerts show."""
    found = detection(alerts_pdf, windows, drift_start)
    if found["false_alarms"]:
        stable = alerts_pdf[pd.to_datetime(alerts_pdf["window_start"]) < pd.Timestamp(drift_start)]
        example = stable["message"].iloc[0]
        raise AssertionError(
            f"{len(found['false_alarms'])} stable windows alerted "
            f"({_days(found['false_alarms'])}), before the drift starts on "
            f"{pd.Timestamp(drift_start):%Y-%m-%d}; e.g. {example}. A large PSI on a few rows "
            "is noise, and a small p-value alone flags any shift once the sample is large: "
            f"alert when PSI >= {policy.psi_moderate} (warning) or {policy.psi_major} "
            f"(critical) AND the test's p-value < {policy.alpha}, in a window of at least "
            f"{policy.min_count} rows"
        )
    if found["missed"]:
        types = set(alerts_pdf["drift_type"])
        hint = (
            "the alerts compare each window with the previous one (CONSECUTIVE): a drift that "
            "stays, or grows slowly, looks stable from one day to the next; compare with the "
            "baseline (drift_type BASELINE)"
            if types == {CONSECUTIVE} or not found["detected"] or types >= {CONSECUTIVE}
            else "compare every window with the baseline (drift_type BASELINE)"
        )
        raise AssertionError(
            f"{len(found['missed'])} of the {len(found['drift_windows'])} windows from "
            f"{pd.Timestamp(drift_start):%Y-%m-%d} did not alert ({_days(found['missed'])}): "
            f"{hint}"
        )
    return (
        f"detection ok: {len(found['detected'])}/{len(found['drift_windows'])} drift windows "
        f"alerted from {pd.Timestamp(drift_start):%Y-%m-%d}, 0/{len(found['stable_windows'])} "
        "stable windows"
    )


def check_performance(
    performance_fn,
    frame: pd.DataFrame,
    *,
    windows: Sequence[tuple],
    as_of_dates: Sequence,
    maturity,
    **kwargs,
) -> str:
    """Call ``performance_fn(as_of)`` at each of ``as_of_dates`` and compare with
    :func:`performance_by_window`: the same windows, frauds known at that date, and figures
    only where the labels are mature."""
    maturity = pd.Timedelta(maturity)
    for as_of in as_of_dates:
        as_of = pd.Timestamp(as_of)
        expected = performance_by_window(
            frame, windows=windows, as_of=as_of, maturity=maturity, **kwargs
        ).set_index("window_start")
        got = performance_fn(as_of)
        _require_columns(got, ["window_start", *PERFORMANCE_COLUMNS], "the performance frame")
        got = got.set_index(pd.to_datetime(got["window_start"]))
        if sorted(got.index) != sorted(expected.index):
            raise AssertionError(
                f"as of {as_of:%Y-%m-%d} the windows are {_days(got.index)}, expected "
                f"{_days(expected.index)}: one row per window of the monitor"
            )
        # the labels first (a wrong as_of shows in the counts), then maturity, then figures
        for start, row in expected.iterrows():
            mine = got.loc[start]
            if int(mine["frauds_known"]) != row["frauds_known"]:
                later = "more" if int(mine["frauds_known"]) > row["frauds_known"] else "fewer"
                raise AssertionError(
                    f"window {start:%m-%d}, as of {as_of:%Y-%m-%d}: {int(mine['frauds_known'])} "
                    f"frauds known, expected {row['frauds_known']} ({later}): a payment is "
                    f"fraud once its notice arrived by then ({LABEL_TIME} <= as_of); labels "
                    "that arrive later were not known"
                )
        for start, row in expected.iterrows():
            mine = got.loc[start]
            if not row["labels_mature"] and not pd.isna(mine["pr_auc"]):
                raise AssertionError(
                    f"window {start:%m-%d} has a PR-AUC as of {as_of:%Y-%m-%d}, but its labels "
                    f"are mature only from {row['window_end'] + maturity:%Y-%m-%d} (window end + "
                    f"{maturity.days} days): frauds still on their way count as legitimate and "
                    "the figure is too low; leave it null until window end + maturity <= as_of"
                )
        for start, row in expected.iterrows():
            mine = got.loc[start]
            for name in ("pr_auc", "recall", "precision"):
                a, b = mine[name], row[name]
                if pd.isna(a) != pd.isna(b) or (not pd.isna(b) and not _close(a, b, 1e-6)):
                    raise AssertionError(
                        f"window {start:%m-%d}, as of {as_of:%Y-%m-%d}: {name} {a}, expected "
                        f"{b} (computed only when the labels are mature and the window holds "
                        "enough known frauds)"
                    )
    return f"performance ok at {len(as_of_dates)} refresh dates: figures only on mature labels"


def combine(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Frames of the same columns, one after the other (empty ones skipped)."""
    frames = list(frames)
    kept = [f for f in frames if len(f)]
    if not kept:
        return frames[0].iloc[0:0].copy() if frames else pd.DataFrame()
    return pd.concat(kept, ignore_index=True)
