"""Machine learning on the lakehouse: the names every ML lesson shares.

The module's tables, lesson by lesson::

    silver.payments + payments.chargebacks (raw CSV, label_available_ts)
      -> ml.fraud_labels               one row per payment: is_fraud, when it is known   01
      -> ml.payment_features           per payment, as known at its arrival (ingest_ts)  01
      -> ml.customer_daily_features    per customer per day, available at the day's end  01
      -> training sets                 labels + features joined as of prediction_ts      01
      -> ml.customer_features_online   the latest value per customer (online lookup)     01

    payments.attempts + payments.transactions (raw Parquet and JSON)
      -> ml.approval_examples          each payment's first attempt and its context       03
      -> ml.retry_examples             each retried decline: code, wait, retry approved?  03
    ml.fraud_training_set (lesson 02, from the tables of 01)
      -> ml.risk_examples              lesson 02's fraud examples, for the risk tiers     03

    ml.fraud_holdout                 the payments from T2 with frozen labels, written once,
                                     read VERSION AS OF by every model comparison         04

    lakehouse.ml.features   feature and label tables, the point-in-time join, the checks
    lakehouse.ml.payment_models  approval, risk tier, routing and retry in Spark ML, time folds
    lakehouse.ml.registry   registered versions and aliases (@champion, @challenger,
                            @previous), the frozen holdout, the promotion gate, rollback

    gold.fact_sales, gold.dim_customer, silver.web_sessions, silver.support_tickets
      -> ml.churn_training_set         per customer and weekly observation date          05
                                       (features before it, label from the 21 days after)

    lakehouse.ml.churn      weekly observation dates, the time split with a gap of the
                            horizon, the retention offer's profit, the model card

    silver.payments + the tables of 01 + models:/fraud_detector@champion
      -> gold.fraud_scores             per payment and model version: score, threshold,
                                       flagged, stamped with name, version, alias, time  06
      -> ml.inference_log              per scoring on the stream (and from serving): the
                                       version, the features as JSON, the decision         06

    lakehouse.ml.scoring    spark_udf batch scoring, the foreachBatch scorer that resolves
                            @champion per micro-batch, exactly-once logging, the checks

    HTTP requests -> router (hash split 90/10, shadow) -> mlflow models serve x 2
      -> ml.inference_log              one row per (request_id, role): served or shadow  07
                                       (JSON lines merged into Delta, idempotent)

    lakehouse.ml.serving    mlflow models serve as a managed subprocess, request formats,
                            the signature as a validator, bad inputs probed
    lakehouse.ml.router     the customer-hash split, the shadow, the inference log
    lakehouse.ml.abtest     the two-proportion test, power and sample size, peeking

    gold.fraud_scores (the champion's scores) + ml.fraud_training_set (inputs, labels)
      -> ml.fraud_scores_profile_metrics    per window: counts, moments, quantiles;       08
                                            performance on mature labels (weekly)
      -> ml.fraud_scores_drift_metrics      per window vs baseline / previous window
    payments.attempts (first attempts, sliced by processor)
      -> ml.payment_attempts_profile_metrics, ml.payment_attempts_drift_metrics          08
      -> ml.monitoring_alerts               a large PSI and a small p-value vs baseline  08

    lakehouse.ml.monitoring PSI, KS, JS, chi-square; the metric tables with Databricks
                            Lakehouse Monitoring's columns; the alert rule; the checks

Every feature row carries ``feature_ts``, the first moment its values may be used; a training
set takes, for each label, the latest feature row with ``feature_ts <= prediction_ts``, never a
newer one (:func:`lakehouse.ml.features.point_in_time_join`). On Databricks the same tables are
time series feature tables (primary key plus a ``TIMESERIES`` key) for the Feature Engineering
client's ``FeatureLookup(..., timestamp_lookup_key=...)``.
"""

from __future__ import annotations

SCHEMA = "ml"

FRAUD_LABELS = "ml.fraud_labels"
PAYMENT_FEATURES = "ml.payment_features"
CUSTOMER_DAILY_FEATURES = "ml.customer_daily_features"
CUSTOMER_FEATURES_ONLINE = "ml.customer_features_online"
APPROVAL_EXAMPLES = "ml.approval_examples"
RETRY_EXAMPLES = "ml.retry_examples"
RISK_EXAMPLES = "ml.risk_examples"
FEATURE_TABLES = (FRAUD_LABELS, PAYMENT_FEATURES, CUSTOMER_DAILY_FEATURES, CUSTOMER_FEATURES_ONLINE)
CHURN_TRAINING_SET = "ml.churn_training_set"

# The holdout every champion/challenger comparison reads at one version (lakehouse.ml.registry).
FRAUD_HOLDOUT = "ml.fraud_holdout"

# The raw dataset the labels come from (written by lakehouse.datagen beside the payments).
CHARGEBACKS_DATASET = "payments.chargebacks"

__all__ = [
    "APPROVAL_EXAMPLES",
    "RETRY_EXAMPLES",
    "RISK_EXAMPLES",
    "CHARGEBACKS_DATASET",
    "CHURN_TRAINING_SET",
    "CUSTOMER_DAILY_FEATURES",
    "CUSTOMER_FEATURES_ONLINE",
    "FEATURE_TABLES",
    "FRAUD_HOLDOUT",
    "FRAUD_LABELS",
    "PAYMENT_FEATURES",
    "SCHEMA",
]
