"""The four payment models of lesson 05_ml/03 in Spark ML: approval propensity, risk tier,
routing and retry. One pipeline pattern (indexers, encoders, imputer, assembler) serves them
all; cross-validation runs over time folds; each model is judged against a named baseline on a
later, held-out period. Everything here runs on classic Spark and through Spark Connect.

The frames (one row per decision, features known when it is taken, a ``label``)::

    payments.attempts + payments.transactions
      first_attempts   attempt 1 of each payment: will it be approved?          approval
      routing_examples the randomly routed first attempts: approved at once?      routing
      retry_examples   a declined attempt and its retry: the wait, whether the
                       retry was approved                                        retry
    payments.transactions + payments.chargebacks (lakehouse.ml.training)
      risk examples    fraud notice known as of a date                           risk tier

Routing is learned from the exploration slice only (``routed_randomly``): there every processor
had the same chance, so an approval model with the processor as a feature sees each processor on
every kind of payment, and the processor it scores highest for a payment is the recommendation.
On rule-routed traffic each kind of payment is seen on one processor only (the rule's), and the
processor's effect is mixed up with the rule's choice: the model learns the rule's bias.

Example::

    from lakehouse.ml import payment_models as pm

    attempts_df = pm.read_attempts(spark)
    context_df = pm.payment_context(spark)
    approval_df = pm.first_attempts(attempts_df, context_df)
    folds = pm.expanding_folds("2026-06-01", "2026-06-22", n_folds=3)
    splits = [fold.frames(approval_df) for fold in folds]
    pm.check_time_folds(splits)
    forest = RandomForestClassifier(numTrees=20, maxDepth=5)
    pm.time_fold_cv(splits,
                    lambda: pm.build_pipeline(forest, pm.APPROVAL_CATEGORICAL, pm.APPROVAL_NUMERIC),
                    BinaryClassificationEvaluator(metricName="areaUnderROC"))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.ml import Pipeline
from pyspark.ml.feature import Imputer, OneHotEncoder, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.datagen import payment_ops as ops
from lakehouse.gold.facts import to_usd
from lakehouse.ml import features as ml_features
from lakehouse.ml import training
from lakehouse.streaming import pipeline as stream

LABEL = "label"
TIME = "attempt_ts"
SCORE = "score"
PROCESSORS = ops.PROCESSORS
SOFT_CODES = tuple(c for c, (_, kind, _) in ops.RESPONSE_CODES.items() if kind == "soft")
HARD_CODES = tuple(c for c, (_, kind, _) in ops.RESPONSE_CODES.items() if kind == "hard")

# What an attempt's processor answered: known only after the request went out, never a
# feature of the decision about that attempt (the retry model reads the previous attempt's
# code, as decline_code, which is known when the retry is decided).
ATTEMPT_OUTCOMES = ("response_code", "approved", "latency_ms", LABEL)
OUTCOME_COLUMNS = (*ml_features.OUTCOME_COLUMNS, *ATTEMPT_OUTCOMES)

PAYMENT_CATEGORICAL = ("card_network", "region", "merchant_category", "channel")
PAYMENT_NUMERIC = ("log_amount_usd", "local_hour")
APPROVAL_CATEGORICAL = ("processor", *PAYMENT_CATEGORICAL)
APPROVAL_NUMERIC = PAYMENT_NUMERIC
RETRY_CATEGORICAL = ("decline_code", "processor", "channel", "merchant_category")
RETRY_NUMERIC = ("declined_attempt_no", "log_amount_usd", "log10_wait_s")
WAIT_CATEGORICAL = RETRY_CATEGORICAL
WAIT_NUMERIC = ("declined_attempt_no", "log_amount_usd")
RISK_CATEGORICAL = training.CATEGORICAL_FEATURES
RISK_NUMERIC = training.NUMERIC_FEATURES
TIERS = ("LOW", "MEDIUM", "HIGH")

ATTEMPTS_DDL = (
    "attempt_id string, transaction_id string, attempt_no int, retry_of string, "
    "attempt_ts timestamp, processor string, routed_randomly boolean, response_code string, "
    "approved boolean, latency_ms int"
)

# --------------------------------------------------------------------------- the frames


def read_attempts(spark: SparkSession, raw_root=None) -> DataFrame:
    """``payments.attempts`` (Parquet) as written by the generator."""
    root = training.raw_root_of(spark, raw_root)
    return spark.read.schema(ATTEMPTS_DDL).parquet(f"{root}/payments/attempts/*.parquet")


def _region(country: Column) -> Column:
    regions = F.create_map(
        *[F.lit(x) for pair in sorted(ops.REGION_OF_COUNTRY.items()) for x in pair]
    )
    return F.coalesce(regions[country], F.lit("rest_of_world"))


def payment_context(spark: SparkSession, raw_root=None) -> DataFrame:
    """Per payment, what is known before its first authorization request: card network,
    region of the country, merchant category, channel, amount (USD and its log) and the local
    hour. Nothing about how the payment ended (status, decline_reason, fraud_score, is_fraud).
    From ``silver.payments``, built first when it does not exist."""
    from lakehouse import gold

    gold.ensure_silver_inputs(spark, ["silver.payments"], training.raw_root_of(spark, raw_root))
    amount_usd = to_usd("amount", "currency").cast("double")
    return spark.table("silver.payments").select(
        "transaction_id",
        "card_network",
        "country",
        _region(F.col("country")).alias("region"),
        "merchant_category",
        "channel",
        amount_usd.alias("amount_usd"),
        F.log1p(amount_usd).alias("log_amount_usd"),
        F.hour(stream.local_time("event_ts", "city")).cast("double").alias("local_hour"),
    )


def first_attempts(attempts_df: DataFrame, context_df: DataFrame) -> DataFrame:
    """The approval examples: each payment's first attempt with its processor, whether it was
    routed randomly, the payment's context and ``label`` (1.0: approved at once)."""
    return (
        attempts_df.where(F.col("attempt_no") == 1)
        .join(context_df, "transaction_id")
        .withColumn(LABEL, F.col("approved").cast("double"))
    )


def routing_examples(approval_df: DataFrame) -> DataFrame:
    """The routing examples: the randomly routed first attempts (``label``: approved at
    once). Rule-routed attempts are left out: they show each kind of payment on the rule's
    processor only."""
    return approval_df.where(F.col("routed_randomly"))


def rule_processor() -> Column:
    """The routing rule of the generator (``payment_ops.ROUTING_RULE``, first match wins) as
    a column, from ``card_network``, ``region``, ``amount_usd`` and ``merchant_category``."""
    return (
        F.when(F.col("card_network") == "amex", "lamna")
        .when(F.col("region") == "europe", "relecloud")
        .when(F.col("amount_usd") >= ops.LARGE_AMOUNT_USD - 0.005, "lamna")
        .when(F.col("merchant_category").isin("digital_goods", "streaming"), "trey")
        .otherwise("woodgrove")
    )


def retry_examples(attempts_df: DataFrame, context_df: DataFrame) -> DataFrame:
    """One row per retried declined attempt: the decline (``decline_code``, ``decline_type``
    soft or hard, ``declined_attempt_no``, its ``attempt_ts``), the payment's context, the wait
    before the retry (``wait_s`` and ``log10_wait_s``) and ``label`` (1.0: the retry was
    approved). A declined attempt that was never retried has no outcome and no row."""
    declined = attempts_df.where(~F.col("approved")).select(
        "attempt_id",
        "transaction_id",
        "processor",
        F.col("attempt_no").cast("double").alias("declined_attempt_no"),
        F.col("attempt_ts"),
        F.col("response_code").alias("decline_code"),
    )
    retries = attempts_df.where(F.col("retry_of").isNotNull()).select(
        F.col("retry_of").alias("attempt_id"),
        F.col("attempt_ts").alias("retry_ts"),
        F.col("approved").cast("double").alias(LABEL),
    )
    wait_s = F.unix_micros(F.col("retry_ts")) / 1e6 - F.unix_micros(F.col("attempt_ts")) / 1e6
    return (
        declined.join(retries, "attempt_id")
        .join(context_df, "transaction_id")
        .withColumns(
            {
                "decline_type": F.when(F.col("decline_code").isin(*SOFT_CODES), "soft").otherwise(
                    "hard"
                ),
                "wait_s": wait_s,
            }
        )
        .withColumn("log10_wait_s", F.log10(F.greatest(F.col("wait_s"), F.lit(1.0))))
    )


def risk_examples(spark: SparkSession, raw_root=None) -> DataFrame:
    """The fraud examples of lesson 02 (``training.fraud_examples``) with ``attempt_ts`` = the
    payment's ``event_ts``, so the same time helpers split them."""
    return training.fraud_examples(spark, raw_root=raw_root).withColumn(TIME, F.col(training.TIME))


def with_label_as_of(df: DataFrame, as_of=None) -> DataFrame:
    """``label`` = 1.0 where the payment's fraud notice had arrived by ``as_of`` (None: every
    notice there is, today's view)."""
    known = F.col(training.LABEL_TIME).isNotNull()
    if as_of is not None:
        known &= F.col(training.LABEL_TIME) <= F.lit(pd.Timestamp(as_of).to_pydatetime())
    return df.withColumn(LABEL, known.cast("double"))


def reproducible(df: DataFrame, key: str, *, partitions: int | None = None) -> DataFrame:
    """``df`` hash-partitioned by ``key`` into a fixed number of partitions (default: the
    session's ``spark.sql.shuffle.partitions``), each sorted by ``key``.

    A seeded Spark ML estimator draws its random numbers partition by partition and row by row
    (a random forest's bootstrap, the split candidates' sample), so the seed reproduces a model
    only when every row sits in the same partition at the same place. A table read promises
    neither: the files' row order comes from the shuffle that wrote them, and a rewrite or a
    compaction changes the files. ``key`` must be unique; after this the layout depends on the
    rows alone."""
    if partitions is None:
        partitions = int(df.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    return df.repartition(partitions, key).sortWithinPartitions(key)


def between(df: DataFrame, start=None, end=None, *, time: str = TIME) -> DataFrame:
    """The rows of ``df`` with ``start <= time < end`` (either bound may be None)."""
    if start is not None:
        df = df.where(F.col(time) >= F.lit(pd.Timestamp(start).to_pydatetime()))
    if end is not None:
        df = df.where(F.col(time) < F.lit(pd.Timestamp(end).to_pydatetime()))
    return df


# --------------------------------------------------------------------------- the pipeline


def check_features(columns: Iterable[str], *, name: str = "the feature columns") -> list:
    """Assert no column of ``columns`` is an outcome (``lakehouse.ml.features``'s, or what the
    processor answered: response_code, approved, latency_ms) or the label. Returns them."""
    columns = ml_features.check_feature_columns(columns, name=name)
    leaks = [c for c in columns if c in ATTEMPT_OUTCOMES]
    if leaks:
        raise AssertionError(
            f"{name} include {', '.join(leaks)}: what the processor answered is known only after "
            "the request went out. Use only the payment's context and the routing decision"
        )
    return columns


def build_pipeline(
    estimator,
    categorical: Sequence[str],
    numeric: Sequence[str] = (),
    *,
    features_col: str = "features",
) -> Pipeline:
    """The shared pattern: ``StringIndexer`` (unseen and null categories go to an extra index)
    -> ``OneHotEncoder`` -> ``Imputer`` (median, for null numbers) -> ``VectorAssembler`` ->
    ``estimator``. Every stage is fitted inside ``Pipeline.fit``, on the training rows only.
    Raises when a feature is an outcome (:func:`check_features`)."""
    categorical, numeric = list(categorical), list(numeric)
    check_features([*categorical, *numeric])
    indexed = [f"{c}_index" for c in categorical]
    encoded = [f"{c}_onehot" for c in categorical]
    imputed = [f"{c}_imputed" for c in numeric]
    stages = []
    if categorical:
        stages += [
            StringIndexer(
                inputCols=categorical,
                outputCols=indexed,
                handleInvalid="keep",
                stringOrderType="alphabetAsc",  # repeatable: no tie between equal frequencies
            ),
            OneHotEncoder(inputCols=indexed, outputCols=encoded, handleInvalid="keep"),
        ]
    if numeric:
        stages.append(Imputer(inputCols=numeric, outputCols=imputed, strategy="median"))
    stages.append(VectorAssembler(inputCols=encoded + imputed, outputCol=features_col))
    return Pipeline(stages=[*stages, estimator])


def probability_of(index: int = 1, column: str = "probability") -> Column:
    """The probability of class ``index`` from a classifier's probability vector."""
    return vector_to_array(F.col(column))[index]


def scored(model, df: DataFrame, columns: Sequence[str] = ()) -> pd.DataFrame:
    """``model.transform(df)`` as pandas: ``columns``, ``label`` and ``score`` (the
    probability of class 1): one Spark job."""
    return model.transform(df).select(*columns, LABEL, probability_of(1).alias(SCORE)).toPandas()


# --------------------------------------------------------------------------- time folds


@dataclass(frozen=True)
class TimeFold:
    """Train on ``[start, train_end)``, validate on ``[valid_start, valid_end)``; the
    validation period is never earlier than the training period ends."""

    start: pd.Timestamp
    train_end: pd.Timestamp
    valid_start: pd.Timestamp
    valid_end: pd.Timestamp

    def frames(self, df: DataFrame, *, time: str = TIME) -> tuple[DataFrame, DataFrame]:
        """``(train_df, valid_df)`` of ``df``."""
        return (
            between(df, self.start, self.train_end, time=time),
            between(df, self.valid_start, self.valid_end, time=time),
        )


def expanding_folds(start, end, *, n_folds: int = 3, gap="0 days") -> list[TimeFold]:
    """``n_folds`` expanding-window folds over ``[start, end)``: the period is cut into
    ``n_folds + 1`` equal blocks; fold k trains on blocks 0..k and validates on block k + 1
    (after ``gap``, e.g. the labels' maturity). Every fold validates on a later period than it
    trains on, as the model will be used: on the future."""
    start, end, gap = pd.Timestamp(start), pd.Timestamp(end), pd.Timedelta(gap)
    if n_folds < 1:
        raise ValueError(f"n_folds={n_folds}: give at least 1 fold")
    if end <= start:
        raise ValueError(f"end {end} is not after start {start}: give the history's bounds")
    if gap < pd.Timedelta(0):
        raise ValueError(f"gap {gap} is negative: give the labels' maturity, or 0")
    block = (end - start) / (n_folds + 1)
    if gap >= block:
        raise ValueError(f"gap {gap} leaves nothing of a {block} validation block: use fewer folds")
    edges = [start + block * i for i in range(n_folds + 2)]
    return [TimeFold(start, edges[k + 1], edges[k + 1] + gap, edges[k + 2]) for k in range(n_folds)]


def time_fold_cv(
    splits: Sequence[tuple[DataFrame, DataFrame]],
    build: Callable[..., Pipeline],
    evaluator,
    *,
    grid: Sequence[Mapping] = ({},),
) -> pd.DataFrame:
    """Cross-validation over time folds: for each parameter set of ``grid``
    (``build(**params)`` makes the pipeline) and each ``(train_df, valid_df)`` of ``splits``
    (one per fold, see :func:`check_time_folds`), fit on the training rows and
    ``evaluator.evaluate`` the model on the validation rows. Returns one row per
    (params, fold) with ``metric``; :func:`best_params` picks the winner.

    Spark's ``CrossValidator`` cannot do this: its folds (random, or ``foldCol``) train on
    every fold but the validated one, so the first weeks are validated by a model that saw the
    later ones. Only the fits and the evaluator are Spark's here; both work through Spark
    Connect."""
    if not splits:
        raise ValueError("splits is empty: give one (train_df, valid_df) pair per time fold")
    if not grid:
        raise ValueError("grid is empty: give at least one parameter set, e.g. [{}]")
    rows = []
    for i, params in enumerate(grid):
        for k, (train_df, valid_df) in enumerate(splits):
            model = build(**params).fit(train_df)
            rows.append(
                {
                    "grid_index": i,
                    "params": dict(params),
                    "fold": k,
                    "metric": float(evaluator.evaluate(model.transform(valid_df))),
                }
            )
    return pd.DataFrame(rows)


def best_params(cv: pd.DataFrame, *, larger_is_better: bool = True) -> dict:
    """The parameter set of :func:`time_fold_cv`'s result with the best mean metric."""
    means = cv.groupby("grid_index")["metric"].mean()
    best = means.idxmax() if larger_is_better else means.idxmin()
    return dict(cv.loc[cv["grid_index"] == best, "params"].iloc[0])


def check_time_folds(splits: Sequence[tuple[DataFrame, DataFrame]], *, time: str = TIME) -> str:
    """Assert each ``(train_df, valid_df)`` split of ``splits`` validates on rows later than
    every training row (no fold trains on the future), that folds do not share validation
    rows, and that the training window grows or slides forward. One Spark job."""
    if not splits:
        raise AssertionError("splits is empty: build one (train_df, valid_df) pair per fold")
    parts = []
    for k, (train_df, valid_df) in enumerate(splits):
        for side, frame in (("train", train_df), ("valid", valid_df)):
            if time not in frame.columns:
                raise AssertionError(
                    f"fold {k}'s {side} frame lacks {time!r}: keep the time column"
                )
            parts.append(
                frame.agg(
                    F.min(time).alias("first"), F.max(time).alias("last"), F.count("*").alias("n")
                ).select(F.lit(k).alias("fold"), F.lit(side).alias("side"), "*")
            )
    summary_df = parts[0]
    for part in parts[1:]:
        summary_df = summary_df.unionByName(part)
    summary = summary_df.toPandas().set_index(["fold", "side"]).sort_index()
    return _check_fold_summary(summary)


def _check_fold_summary(summary: pd.DataFrame) -> str:
    folds = sorted({k for k, _ in summary.index})
    for k in folds:
        train, valid = summary.loc[(k, "train")], summary.loc[(k, "valid")]
        if train["n"] == 0 or valid["n"] == 0:
            raise AssertionError(
                f"fold {k} has an empty {'training' if train['n'] == 0 else 'validation'} "
                "side: cut the history into n_folds + 1 blocks and give each fold rows"
            )
        if pd.Timestamp(train["last"]) >= pd.Timestamp(valid["first"]):
            raise AssertionError(
                f"fold {k} trains on rows up to {train['last']} and validates from "
                f"{valid['first']}: it trains on the future (a random split, or CrossValidator's "
                "foldCol, which trains on every other fold). Train on the rows before the "
                "validation period only"
            )
    for k in folds[1:]:
        prev_valid, valid = summary.loc[(k - 1, "valid")], summary.loc[(k, "valid")]
        prev_train, train = summary.loc[(k - 1, "train")], summary.loc[(k, "train")]
        if pd.Timestamp(valid["first"]) <= pd.Timestamp(prev_valid["last"]):
            raise AssertionError(
                f"folds {k - 1} and {k} validate on overlapping periods: give each fold the next "
                "block of time"
            )
        if pd.Timestamp(train["last"]) <= pd.Timestamp(prev_train["last"]):
            raise AssertionError(
                f"fold {k} trains on nothing newer than fold {k - 1}: the window must move "
                "forward (expanding: train on everything before the fold's validation block)"
            )
    sizes = ", ".join(
        f"{int(summary.loc[(k, 'train'), 'n'])}->{int(summary.loc[(k, 'valid'), 'n'])}"
        for k in folds
    )
    return f"{len(folds)} time folds, each validated after it trains (train->valid rows: {sizes})"


# --------------------------------------------------------------------------- baselines


def rate_by(train: pd.DataFrame, column: str, *, label: str = LABEL) -> dict:
    """The mean label per value of ``column`` in ``train`` (a historical rate)."""
    return train.groupby(column)[label].mean().to_dict()


def rate_baseline(train: pd.DataFrame, test: pd.DataFrame, column: str) -> np.ndarray:
    """Scores ``test`` with the training rate of its ``column`` value (the prior for a value
    never seen in training)."""
    prior = float(train[LABEL].mean())
    return test[column].map(rate_by(train, column)).fillna(prior).to_numpy(dtype="float64")


def binary_figures(y, score) -> dict:
    """ROC-AUC, PR-AUC, Brier score and log loss of ``score`` for the 0/1 labels ``y``."""
    from sklearn import metrics

    y = np.asarray(y, dtype="int64")
    score = np.asarray(score, dtype="float64")
    clipped = np.clip(score, 1e-6, 1 - 1e-6)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(metrics.roc_auc_score(y, score)) if both else float("nan"),
        "pr_auc": float(metrics.average_precision_score(y, score)) if both else float("nan"),
        "brier": float(np.mean((score - y) ** 2)),
        "log_loss": float(metrics.log_loss(y, clipped, labels=[0, 1])),
    }


# --------------------------------------------------------------------------- risk tiers


def capacity_cutoffs(scores, *, high_share: float, medium_share: float) -> dict[str, float]:
    """The score cut-offs that put about ``high_share`` of the payments in HIGH (what the
    review team can handle) and the next ``medium_share`` in MEDIUM (e.g. step-up
    authentication): quantiles of ``scores`` (a reference period's), not fixed probabilities."""
    _check_shares(high_share, medium_share)
    scores = np.asarray(scores, dtype="float64")
    if scores.size == 0:
        raise ValueError("scores is empty: score the reference period first")
    return {
        "HIGH": float(np.quantile(scores, 1.0 - high_share)),
        "MEDIUM": float(np.quantile(scores, 1.0 - high_share - medium_share)),
    }


def _check_shares(high_share: float, medium_share: float) -> None:
    if not (0 < high_share < 1 and 0 <= medium_share < 1 and high_share + medium_share < 1):
        raise ValueError(
            f"high_share={high_share}, medium_share={medium_share}: give shares of the "
            "payments between 0 and 1, together below 1"
        )


def tier_of(score: str | Column, cutoffs: Mapping[str, float]) -> Column:
    """``LOW`` / ``MEDIUM`` / ``HIGH`` by the cut-offs (a score at a cut-off is in the higher
    tier)."""
    score = F.col(score) if isinstance(score, str) else score
    return (
        F.when(score >= cutoffs["HIGH"], "HIGH")
        .when(score >= cutoffs["MEDIUM"], "MEDIUM")
        .otherwise("LOW")
    )


def tiers(score, cutoffs: Mapping[str, float]) -> np.ndarray:
    """:func:`tier_of` for a numpy array of scores."""
    score = np.asarray(score, dtype="float64")
    return np.where(
        score >= cutoffs["HIGH"], "HIGH", np.where(score >= cutoffs["MEDIUM"], "MEDIUM", "LOW")
    )


def check_risk_cutoffs(
    cutoffs: Mapping[str, float],
    reference_scores,
    *,
    high_share: float,
    medium_share: float,
    tolerance: float = 0.02,
) -> str:
    """Assert ``cutoffs`` put about ``high_share`` of the reference period's payments in HIGH
    and ``medium_share`` in MEDIUM (within ``tolerance``), as capacity demands."""
    _check_shares(high_share, medium_share)
    if not isinstance(cutoffs, Mapping) or set(cutoffs) != {"HIGH", "MEDIUM"}:
        raise AssertionError(
            f"cutoffs is {cutoffs!r}: give a dict with the keys 'HIGH' and 'MEDIUM' (scores)"
        )
    if cutoffs["HIGH"] < cutoffs["MEDIUM"]:
        raise AssertionError(
            f"the HIGH cut-off {cutoffs['HIGH']:.4f} is below MEDIUM's {cutoffs['MEDIUM']:.4f}: "
            "HIGH takes the highest scores, the top high_share"
        )
    scores = np.asarray(reference_scores, dtype="float64")
    assigned = tiers(scores, cutoffs)
    shares = {t: float(np.mean(assigned == t)) for t in ("HIGH", "MEDIUM")}
    for tier, wanted in (("HIGH", high_share), ("MEDIUM", medium_share)):
        if abs(shares[tier] - wanted) > tolerance:
            raise AssertionError(
                f"{tier} holds {shares[tier]:.1%} of the reference payments, not "
                f"{wanted:.1%}: a fixed probability (0.5, 0.2) ignores what the team can "
                "review. Take the cut-offs as quantiles of the reference scores: HIGH at "
                "1 - high_share, MEDIUM at 1 - high_share - medium_share"
            )
    return (
        f"cut-offs HIGH >= {cutoffs['HIGH']:.4f}, MEDIUM >= {cutoffs['MEDIUM']:.4f}: "
        f"{shares['HIGH']:.1%} HIGH and {shares['MEDIUM']:.1%} MEDIUM on the reference period"
    )


def capacity_recall(y, score, share: float, tie_break=None) -> float:
    """The share of positives among the top ``share`` of the rows by ``score`` (ties broken by
    ``tie_break``, then by position): what a team reviewing that many catches."""
    y = np.asarray(y, dtype="int64")
    score = np.asarray(score, dtype="float64")
    if y.sum() == 0:
        return float("nan")
    k = max(1, math.ceil(share * len(y)))
    secondary = np.zeros(len(y)) if tie_break is None else np.asarray(tie_break, dtype="float64")
    order = np.lexsort((np.arange(len(y)), -secondary, -score))
    return float(y[order[:k]].sum() / y.sum())


# --------------------------------------------------------------------------- routing


def replay_value(logged: Sequence[str], approved, chosen: Sequence[str]) -> tuple[float, int]:
    """The off-policy value of a routing policy on randomly routed attempts: the approval rate
    of the attempts where the policy ``chosen`` the processor that was ``logged`` (replay), and
    how many matched. Unbiased because the logged processor was drawn uniformly: the matched
    attempts are a random sample of what the policy would have done. Valid ONLY on the
    random slice: on rule-routed traffic the matches are the rule's own choices."""
    logged, chosen = np.asarray(logged), np.asarray(chosen)
    approved = np.asarray(approved, dtype="float64")
    if not (len(logged) == len(chosen) == len(approved)):
        raise ValueError("logged, approved and chosen differ in length: pass one row per attempt")
    match = logged == chosen
    if not match.any():
        return float("nan"), 0
    return float(approved[match].mean()), int(match.sum())


def recommendations(model, df: DataFrame, columns: Sequence[str] = ()) -> pd.DataFrame:
    """For each row of ``df`` (one per ``attempt_id``), the processor for which the approval
    ``model`` (a pipeline with ``processor`` among its features) gives the highest
    probability: ``columns`` and ``recommended``, as pandas (one Spark job). The logged
    processor is kept as ``logged_processor``."""
    candidates = df.withColumnRenamed("processor", "logged_processor").withColumn(
        "processor", F.explode(F.array(*map(F.lit, PROCESSORS)))
    )
    columns = [c if c != "processor" else "logged_processor" for c in columns]
    keep = list(dict.fromkeys(["attempt_id", *columns]))
    pdf = (
        model.transform(candidates)
        .select(*keep, "processor", probability_of(1).alias(SCORE))
        .toPandas()
    )
    best = pdf.sort_values([SCORE, "processor"], ascending=[False, True]).drop_duplicates(
        "attempt_id"
    )
    return (
        best.rename(columns={"processor": "recommended"})
        .drop(columns=SCORE)
        .sort_values("attempt_id")
        .reset_index(drop=True)
    )


def check_routing_examples(routing_df: DataFrame, *, history_end) -> str:
    """Assert the routing training frame holds only randomly routed first attempts before
    ``history_end``, approved and declined, with ``label`` = approved. One Spark job."""
    needed = ["routed_randomly", "approved", "attempt_no", TIME, LABEL]
    missing = [c for c in needed if c not in routing_df.columns]
    if missing:
        raise AssertionError(
            f"the routing frame lacks {missing}: start from the approval examples (history_df)"
        )
    row = routing_df.agg(
        F.count("*").alias("n"),
        F.sum((~F.col("routed_randomly")).cast("int")).alias("rule_routed"),
        F.sum((~F.col("approved")).cast("int")).alias("declined"),
        F.sum((F.col("attempt_no") != 1).cast("int")).alias("retries"),
        F.max(TIME).alias("last"),
        F.sum((F.col(LABEL) != F.col("approved").cast("double")).cast("int")).alias("wrong_label"),
    ).first()
    return _check_routing_summary(row.asDict(), pd.Timestamp(history_end))


def _check_routing_summary(s: Mapping, history_end: pd.Timestamp) -> str:
    if not s["n"]:
        raise AssertionError("the routing frame is empty: keep the randomly routed first attempts")
    if s["rule_routed"]:
        raise AssertionError(
            f"{s['rule_routed']} of {s['n']} rows were routed by the rule: on them each kind of "
            "payment meets one processor only, so the model learns the rule's choices (its "
            "bias), not which processor approves. Keep routed_randomly = true only"
        )
    if s["retries"]:
        raise AssertionError(
            f"{s['retries']} rows are retries: routing decides the first attempt; keep "
            "attempt_no = 1"
        )
    if pd.Timestamp(s["last"]) >= history_end:
        raise AssertionError(
            f"the routing frame reaches {s['last']}, past the history's end {history_end}: the "
            "held-out period must stay unseen"
        )
    if s["wrong_label"]:
        raise AssertionError(
            f"{s['wrong_label']} rows have a label other than approved: the model learns "
            "whether the first attempt was approved (label = approved as 0/1)"
        )
    if not s["declined"]:
        raise AssertionError(
            "no declined attempt is left: the model must see the processors' declines too. "
            "Keep approved and declined first attempts"
        )
    return (
        f"{s['n']} randomly routed first attempts before {history_end.date()} "
        f"({s['declined']} declined)"
    )


# --------------------------------------------------------------------------- retry


def check_wait_examples(wait_df: DataFrame, *, history_end) -> str:
    """Assert the wait regressor's frame holds only retries that succeeded after a SOFT
    decline, before ``history_end``. One Spark job."""
    needed = ["decline_code", LABEL, TIME]
    missing = [c for c in needed if c not in wait_df.columns]
    if missing:
        raise AssertionError(f"the wait frame lacks {missing}: start from retry_examples")
    row = wait_df.agg(
        F.count("*").alias("n"),
        F.sum(F.col("decline_code").isin(*HARD_CODES).cast("int")).alias("hard"),
        F.sum((F.col(LABEL) != 1.0).cast("int")).alias("failed"),
        F.max(TIME).alias("last"),
    ).first()
    return _check_wait_summary(row.asDict(), pd.Timestamp(history_end))


def _check_wait_summary(s: Mapping, history_end: pd.Timestamp) -> str:
    if not s["n"]:
        raise AssertionError("the wait frame is empty: keep the successful soft-decline retries")
    if s["hard"]:
        raise AssertionError(
            f"{s['hard']} rows follow a hard decline ({', '.join(HARD_CODES)}): no wait makes "
            "those succeed, so they are no answer to 'how long to wait'. Keep decline_type = "
            "'soft'"
        )
    if s["failed"]:
        raise AssertionError(
            f"{s['failed']} rows are failed retries: their wait was too short or useless, not "
            "the wait that works. Keep label = 1 (the retry was approved)"
        )
    if pd.Timestamp(s["last"]) >= history_end:
        raise AssertionError(
            f"the wait frame reaches {s['last']}, past the history's end {history_end}: keep "
            "the held-out period for the evaluation"
        )
    return f"{s['n']} successful retries after soft declines before {history_end.date()}"


def policy_wait_s(channel) -> np.ndarray:
    """The merchants' policy wait (``payment_ops.RETRY_POLICY``): the median of its
    log-uniform range for the channel, in seconds."""
    ranges = ops.RETRY_POLICY["wait_seconds"]
    return np.array([math.sqrt(ranges[c][0] * ranges[c][1]) for c in np.asarray(channel)])


__all__ = [
    "APPROVAL_CATEGORICAL",
    "APPROVAL_NUMERIC",
    "HARD_CODES",
    "LABEL",
    "OUTCOME_COLUMNS",
    "PROCESSORS",
    "RETRY_CATEGORICAL",
    "RETRY_NUMERIC",
    "RISK_CATEGORICAL",
    "RISK_NUMERIC",
    "SCORE",
    "SOFT_CODES",
    "TIME",
    "TimeFold",
    "WAIT_CATEGORICAL",
    "WAIT_NUMERIC",
    "best_params",
    "between",
    "binary_figures",
    "build_pipeline",
    "capacity_cutoffs",
    "capacity_recall",
    "check_features",
    "check_risk_cutoffs",
    "check_routing_examples",
    "check_time_folds",
    "check_wait_examples",
    "expanding_folds",
    "first_attempts",
    "payment_context",
    "policy_wait_s",
    "probability_of",
    "rate_baseline",
    "read_attempts",
    "recommendations",
    "replay_value",
    "reproducible",
    "retry_examples",
    "risk_examples",
    "routing_examples",
    "rule_processor",
    "scored",
    "tier_of",
    "tiers",
    "with_label_as_of",
]
