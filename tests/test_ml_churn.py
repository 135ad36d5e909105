"""Churn on weekly observation dates: the dates (mature, weekly, none left out), the examples
(features from before the date only, labels from the 21 days after it, eligible customers only),
the time split with a gap of the horizon, the offer's profit and its threshold, the model card;
each check catches the classic wrong answer with a message that names the fix and accepts the
correct alternatives. One Spark test builds the weekly frame from small explicit facts."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from lakehouse.ml import churn

AS_OF = date(2026, 7, 1)
FIRST = date(2026, 1, 1)
H = churn.HORIZON_DAYS


# --------------------------------------------------------------------------- observation dates


def test_observation_dates_are_weekly_mature_and_complete():
    dates = churn.observation_dates(FIRST, AS_OF)
    assert dates[-1] == AS_OF - timedelta(days=H) == date(2026, 6, 10)
    assert dates[0] >= FIRST + timedelta(days=churn.MIN_HISTORY_DAYS)
    assert dates[0] - timedelta(days=7) < FIRST + timedelta(days=churn.MIN_HISTORY_DAYS)
    assert {(b - a).days for a, b in zip(dates, dates[1:], strict=False)} == {7}
    assert "19 weekly observation dates" in churn.check_observation_dates(
        dates, first_day=FIRST, as_of=AS_OF
    )


def test_observation_dates_refuse_a_history_too_short():
    with pytest.raises(ValueError, match="longer history"):
        churn.observation_dates(date(2026, 6, 1), AS_OF)


def test_check_observation_dates_accepts_another_weekday_and_timestamps():
    wednesdays = churn.observation_dates(FIRST, AS_OF)
    mondays = [pd.Timestamp(d) - pd.Timedelta(days=2) for d in wednesdays]
    assert "weekly" in churn.check_observation_dates(mondays, first_day=FIRST, as_of=AS_OF)


@pytest.mark.parametrize(
    ("dates", "fix"),
    [
        ([date(2026, 6, 10)], "one date teaches the model one day"),
        # the weekly grid anchored on as_of: the last three weeks' labels are not over yet
        (
            [AS_OF - timedelta(days=7 * k) for k in reversed(range(22))],
            "Keep dates <= 2026-06-10",
        ),
        (
            [date(2026, 1, 7) + timedelta(days=7 * k) for k in range(23)],
            "start on or after 2026-01-29",
        ),
        ([date(2026, 6, 10) - timedelta(days=14 * k) for k in range(10)], "exactly 7 days apart"),
        (
            [date(2026, 6, 3) - timedelta(days=7 * k) for k in range(18)],
            "start from as_of - horizon",
        ),
        ([date(2026, 6, 10) - timedelta(days=7 * k) for k in range(4)], "every mature week"),
        ("2026-06-10", "one date"),
    ],
)
def test_check_observation_dates_catches(dates, fix):
    with pytest.raises(AssertionError, match=fix):
        churn.check_observation_dates(dates, first_day=FIRST, as_of=AS_OF)


# --------------------------------------------------------------------------- the examples


def orders_frame():
    """C1 orders every two weeks from January, the last on May 27; C2 orders in January only
    (not active from May on); C3 orders on observation days and in label windows; C4's only
    order after its first order is cancelled (still an order: not churned); C5 comes back 22
    days after the observation date of June 3."""
    rows = [("C1", f"C1-{k}", date(2026, 1, 7) + timedelta(days=14 * k), True) for k in range(11)]
    rows += [("C2", "C2-1", date(2026, 1, 10), True)]
    rows += [
        ("C3", "C3-1", date(2026, 5, 20), True),
        ("C3", "C3-2", date(2026, 5, 27), True),  # on an observation date: label, not feature
        ("C3", "C3-3", date(2026, 6, 16), True),  # 20 days after 2026-05-27: inside its window
    ]
    rows += [
        ("C4", "C4-1", date(2026, 5, 1), True),
        ("C4", "C4-2", date(2026, 6, 5), False),  # cancelled: a label, never a feature
    ]
    rows += [("C5", "C5-1", date(2026, 4, 20), True), ("C5", "C5-2", date(2026, 6, 25), True)]
    return pd.DataFrame(rows, columns=["customer_id", "order_id", "order_date", "is_revenue"])


DATES = [date(2026, 5, 20), date(2026, 5, 27), date(2026, 6, 3), date(2026, 6, 10)]


def good_examples():
    return churn.expected_examples(orders_frame(), DATES)


def test_expected_examples_follow_the_definitions():
    got = good_examples().set_index(["customer_id", "observation_date"])
    # C3 on its first order day is not yet a customer; on 05-27 its order that day is a label
    assert ("C3", pd.Timestamp("2026-05-20")) not in got.index
    c3 = got.loc[("C3", pd.Timestamp("2026-05-27"))]
    assert (c3["frequency"], c3["recency_days"], c3["churned"]) == (1, 7, 0)
    c3_later = got.loc[("C3", pd.Timestamp("2026-06-10"))]
    assert (c3_later["frequency"], c3_later["recency_days"], c3_later["churned"]) == (2, 14, 0)
    # C2's last order is more than 90 days old: not eligible, whatever the label would be
    assert "C2" not in got.index.get_level_values(0)
    # C4 ordered (a cancelled order counts) in the window of 05-20 and 06-03
    c4 = got.xs("C4")["churned"].to_dict()
    assert c4 == {
        pd.Timestamp("2026-05-20"): 0,
        pd.Timestamp("2026-05-27"): 0,
        pd.Timestamp("2026-06-03"): 0,
        pd.Timestamp("2026-06-10"): 1,
    }
    assert got.xs("C5")["churned"].tolist() == [1, 1, 1, 0]
    assert got.xs("C4")["recency_days"].tolist() == [19, 26, 33, 40]
    c1 = got.xs("C1")
    assert c1["churned"].tolist() == [0, 0, 1, 1]  # last order 05-27: on that date, it counts


def test_check_examples_accepts_the_definition():
    examples = good_examples()
    assert "weekly dates" in churn.check_examples(examples, orders_frame(), as_of=AS_OF)


def _with(examples, customer, day, **values):
    out = examples.copy()
    where = (out["customer_id"] == customer) & (out["observation_date"] == pd.Timestamp(day))
    for column, value in values.items():
        out.loc[where, column] = value
    return out


def test_check_examples_catches_features_using_the_observation_day_or_later():
    # counting C3's order of 05-27 in its features of 05-27 (order_date <= observation_date)
    leaked = _with(good_examples(), "C3", "2026-05-27", frequency=2.0, recency_days=0.0)
    with pytest.raises(AssertionError, match="order_date < observation_date"):
        churn.check_examples(leaked, orders_frame(), as_of=AS_OF)


def test_check_examples_catches_labels_whose_horizon_is_not_over():
    late = churn.expected_examples(orders_frame(), [*DATES, date(2026, 6, 17)])
    with pytest.raises(AssertionError, match="Keep only mature dates, <= 2026-06-10"):
        churn.check_examples(late, orders_frame(), as_of=AS_OF)


def test_check_examples_catches_a_label_window_up_to_as_of():
    # a window longer than the horizon (e.g. up to as_of, as gold.churn_features' one date
    # has): C5's order of 06-25 makes it stay at 05-20, 05-27 and 06-03
    wrong = churn.expected_examples(orders_frame(), DATES, horizon_days=40)
    wrong = wrong[wrong["observation_date"].isin(pd.to_datetime(DATES))]
    with pytest.raises(AssertionError, match=r"labels differ .* \[observation_date"):
        churn.check_examples(wrong, orders_frame(), as_of=AS_OF)


def test_check_examples_catches_ineligible_and_missing_customers():
    everyone = churn.expected_examples(orders_frame(), DATES, active_days=365)
    with pytest.raises(AssertionError, match="not eligible .* revenue order in the 90 days"):
        churn.check_examples(everyone, orders_frame(), as_of=AS_OF)
    fewer = good_examples().query("customer_id != 'C4'")
    with pytest.raises(AssertionError, match="eligible .* rows are missing"):
        churn.check_examples(fewer, orders_frame(), as_of=AS_OF)


def test_check_examples_catches_one_date_and_duplicates():
    one = churn.expected_examples(orders_frame(), [date(2026, 6, 10)])
    with pytest.raises(AssertionError, match="observe every week"):
        churn.check_examples(one, orders_frame(), as_of=AS_OF)
    twice = pd.concat([good_examples(), good_examples().head(1)])
    with pytest.raises(AssertionError, match="one row each"):
        churn.check_examples(twice, orders_frame(), as_of=AS_OF)


# --------------------------------------------------------------------------- the split


def weekly_frame(weeks=12, customers=5):
    days = [pd.Timestamp("2026-03-04") + pd.Timedelta(days=7 * k) for k in range(weeks)]
    return pd.DataFrame(
        [(f"C{c}", d, c % 2) for d in days for c in range(customers)],
        columns=["customer_id", "observation_date", "churned"],
    )


def test_time_split_leaves_a_gap_of_the_horizon():
    frame = weekly_frame()
    train, test = churn.time_split(frame, test_dates=2)
    days = sorted(frame["observation_date"].unique())
    assert sorted(test["observation_date"].unique()) == days[-2:]
    assert train["observation_date"].max() == days[-2] - pd.Timedelta(days=H)
    summary = churn.check_time_split(train, test, all_dates=days)
    assert "gap 21 days" in summary
    with pytest.raises(ValueError, match="test_dates 12 must be between 1 and 11"):
        churn.time_split(frame, test_dates=12)


def test_check_time_split_accepts_a_longer_gap():
    frame = weekly_frame()
    days = sorted(frame["observation_date"].unique())
    train = frame[frame["observation_date"] <= days[3]]
    test = frame[frame["observation_date"] >= days[-2]]
    assert "train" in churn.check_time_split(train, test, all_dates=days)


def test_check_time_split_catches_a_random_split():
    frame = weekly_frame()
    test = frame.sample(frac=0.25, random_state=0)
    train = frame.drop(test.index)
    with pytest.raises(AssertionError, match="random split .* Split by observation date"):
        churn.check_time_split(train, test)


def test_check_time_split_catches_a_split_by_customer():
    frame = weekly_frame()
    test = frame[frame["customer_id"] == "C0"]
    with pytest.raises(AssertionError, match="same customers, with overlapping label windows"):
        churn.check_time_split(frame.drop(test.index), test)


def test_check_time_split_catches_overlapping_label_windows():
    frame = weekly_frame()
    days = sorted(frame["observation_date"].unique())
    train = frame[frame["observation_date"] < days[-2]]  # no gap: the last 3 weeks overlap
    test = frame[frame["observation_date"] >= days[-2]]
    with pytest.raises(AssertionError, match="label windows of 2 training dates .* gap"):
        churn.check_time_split(train, test)


def test_check_time_split_catches_testing_on_the_past():
    frame = weekly_frame()
    days = sorted(frame["observation_date"].unique())
    test = frame[frame["observation_date"] <= days[1]]
    train = frame[frame["observation_date"] >= days[5]]
    with pytest.raises(AssertionError, match="train on earlier dates"):
        churn.check_time_split(train, test)
    # test dates that are not the latest ones
    test = frame[frame["observation_date"].isin(days[-4:-2])]
    train = frame[frame["observation_date"] <= days[-4] - pd.Timedelta(days=H)]
    with pytest.raises(AssertionError, match="test on the latest mature dates"):
        churn.check_time_split(train, test, all_dates=days)


# --------------------------------------------------------------------------- the offer


COSTS = churn.OfferCosts(offer_cost_usd=10.0, acceptance_rate=0.5, margin_rate=0.2)
# saved per churner reached: 0.5 * 0.2 * value = value / 10
Y = np.array([1, 1, 0, 1, 0, 0, 0, 1, 0, 0])
SCORE = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.55, 0.5, 0.3, 0.1])
VALUE = np.array([500.0, 50.0, 900.0, 400.0, 100.0, 100.0, 100.0, 90.0, 100.0, 100.0])


def test_profit_of_an_offer():
    # targeting the top 4: 50 - 10 + 5 - 10 - 10 + 40 - 10 = 55
    assert churn.expected_profit(Y, SCORE, VALUE, 0.8, COSTS) == pytest.approx(55.0)
    curve = churn.profit_curve(Y, SCORE, VALUE, COSTS)
    assert curve["targeted"].tolist() == list(range(11))
    assert curve.iloc[0]["expected_profit_usd"] == 0.0
    assert curve.set_index("targeted").loc[4, "expected_profit_usd"] == pytest.approx(55.0)
    assert churn.choose_offer_threshold(Y, SCORE, VALUE, COSTS) == 0.8
    assert "the largest possible" in churn.check_offer_threshold(0.8, Y, SCORE, VALUE, costs=COSTS)
    # any threshold between the 4th and 5th score makes the same decisions
    assert "the largest possible" in churn.check_offer_threshold(0.75, Y, SCORE, VALUE, costs=COSTS)


def test_profit_curve_groups_tied_scores():
    curve = churn.profit_curve([1, 0, 1], [0.5, 0.5, 0.2], [100, 100, 100], COSTS)
    assert curve["targeted"].tolist() == [0, 2, 3]


def test_no_offer_pays_when_it_costs_more_than_it_saves():
    dear = churn.OfferCosts(offer_cost_usd=1_000.0, acceptance_rate=0.5, margin_rate=0.2)
    assert churn.choose_offer_threshold(Y, SCORE, VALUE, dear) == np.inf
    assert "0 offers" in churn.check_offer_threshold(np.inf, Y, SCORE, VALUE, costs=dear)


@pytest.mark.parametrize(
    ("threshold", "why"),
    [
        (0.5, "predict\\(\\)'s default"),
        (0.1, "offer to everyone"),
        (0.9, "maximizes accuracy"),
        (0.6, "not the most profitable"),
    ],
)
def test_check_offer_threshold_catches(threshold, why):
    with pytest.raises(AssertionError, match=why + ".*largest expected profit"):
        churn.check_offer_threshold(threshold, Y, SCORE, VALUE, costs=COSTS)


def test_check_offer_threshold_catches_f1_and_accuracy():
    from lakehouse.ml import evaluation as ev

    rng = np.random.default_rng(1)
    y = (rng.random(400) < 0.3).astype(int)
    score = np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1)
    value = np.where(rng.random(400) < 0.1, 2_000.0, 20.0)
    for how, why in (("f1", "maximizes F1"), ("accuracy", "maximizes accuracy")):
        threshold = ev.best_threshold_by(y, score, how)
        with pytest.raises(AssertionError, match=why):
            churn.check_offer_threshold(threshold, y, score, value)


def test_recency_rule_is_the_rule_as_stated():
    X = pd.DataFrame({"recency_days": [0.0, 20.0, 21.0, 60.0]})
    rule = churn.RecencyRule(21).fit(X)
    assert rule.predict(X).tolist() == [0, 0, 1, 1]
    assert np.all(np.diff(rule.predict_proba(X)[:, 1]) > 0)
    with pytest.raises(ValueError, match="recency_days"):
        rule.predict_proba(pd.DataFrame({"x": [1]}))


def test_evaluate_and_segments():
    from lakehouse.ml import evaluation as ev

    frame = pd.DataFrame(
        {"segment": list("ababababab"), "churned": Y, churn.VALUE: VALUE}, index=range(10, 20)
    )
    # value at risk: 475, 45, 765, 320, 70, 60, 55, 45, 30, 10 -> from 300: rows 0, 2 and 3
    assert churn.value_at_risk(SCORE, VALUE)[3] == pytest.approx(320.0)
    figures = churn.evaluate(Y, SCORE, VALUE, threshold=300.0, costs=COSTS)
    assert figures["offers"] == 3 and figures["expected_profit_usd"] == pytest.approx(60.0)
    assert figures["precision"] == pytest.approx(2 / 3) and figures["recall"] == 0.5
    assert figures["pr_auc"] == pytest.approx(ev.pr_auc(Y, SCORE))
    per = churn.segment_metrics(frame, SCORE, threshold=300.0, costs=COSTS)
    assert per["rows"].tolist() == [5, 5] and per["offers"].tolist() == [2, 1]
    assert per["expected_profit_usd"].sum() == pytest.approx(60.0)


# --------------------------------------------------------------------------- the model card


def card(**changes):
    metrics = pd.DataFrame({"pr_auc": [0.7, 0.5]}, index=["logistic_regression", "recency_rule"])
    segments = pd.DataFrame({"pr_auc": [0.6, 0.8]}, index=["consumer", "vip"])
    fields = dict(
        model_name="churn_logistic_regression",
        intended_use="Choose whom to send a retention offer each week.",
        data="ml.churn_training_set v0",
        features=["recency_days"],
        label="No order in the 21 days after the observation date.",
        metrics=metrics,
        segments=segments,
        limitations=["Six months of history."],
        owner="Customer analytics",
    )
    return churn.ModelCard(**{**fields, **changes})


def test_model_card_has_every_section():
    text = card().to_markdown()
    assert text.startswith("# Model card: churn_logistic_regression")
    summary = churn.check_model_card(
        text, model="logistic_regression", baseline="recency_rule", segments=["consumer", "vip"]
    )
    assert "8 sections" in summary


def test_check_model_card_catches_missing_parts():
    text = card().to_markdown()
    args = dict(model="logistic_regression", baseline="recency_rule", segments=["consumer"])
    with pytest.raises(AssertionError, match="lacks the section '## Owner'"):
        churn.check_model_card(text.split("## Owner")[0], **args)
    with pytest.raises(AssertionError, match="'Limitations and ethical considerations' is empty"):
        churn.check_model_card(card(limitations=[]).to_markdown(), **args)
    no_baseline = card(metrics=pd.DataFrame({"pr_auc": [0.7]}, index=["logistic_regression"]))
    with pytest.raises(AssertionError, match="row for 'recency_rule'.* baseline"):
        churn.check_model_card(no_baseline.to_markdown(), **args)
    with pytest.raises(AssertionError, match=r"lack \['corporate'\]"):
        churn.check_model_card(text, **{**args, "segments": ["consumer", "corporate"]})


def test_model_card_is_logged_to_the_run(tmp_path):
    import mlflow

    from lakehouse.ml import tracking

    store = tracking.Store(
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        (tmp_path / "artifacts").as_uri(),
    )
    tracking.configure(experiment="churn_tests", store=store)
    path = tmp_path / "card.md"
    path.write_text(card().to_markdown(), encoding="utf-8")
    with mlflow.start_run() as run:
        pass
    with pytest.raises(AssertionError, match="log the card with"):
        churn.check_model_card_logged(run.info.run_id, path)
    assert churn.log_model_card(run.info.run_id, path) == "model_card/card.md"
    assert "identical" in churn.check_model_card_logged(run.info.run_id, path)
    path.write_text("# Model card: changed later\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="write the card, then log it"):
        churn.check_model_card_logged(run.info.run_id, path)


# --------------------------------------------------------------------------- the Spark frame


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "ml_churn_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


def test_churn_examples_match_the_pandas_definition(spark):
    orders = orders_frame()
    # two CRM versions of C1 (segment changes on 2026-06-01), one for the others, the unknown
    dims = [
        (11, "C1", datetime(2025, 12, 1), "consumer", "US", date(2025, 12, 1)),
        (12, "C1", datetime(2026, 6, 1), "vip", "US", date(2025, 12, 1)),
        (2, "C2", datetime(2025, 12, 1), "consumer", "FR", date(2025, 12, 1)),
        (3, "C3", datetime(2026, 5, 1), "corporate", "DE", date(2026, 5, 1)),
        (4, "C4", datetime(2026, 4, 1), "consumer", "US", date(2026, 4, 1)),
        (5, "C5", datetime(2026, 4, 1), "small_business", "GB", date(2026, 4, 1)),
        (-1, None, None, None, None, None),
    ]
    dim_df = spark.createDataFrame(
        dims,
        "customer_sk long, customer_id string, effective_start_date timestamp, segment string, "
        "country string, signup_date date",
    )
    sk = {"C1": 11, "C2": 2, "C3": 3, "C4": 4, "C5": 5}
    sales = [
        (
            o.order_id,
            sk[o.customer_id],
            datetime.combine(o.order_date, datetime.min.time()),
            "delivered" if o.is_revenue else "cancelled",
            Decimal("40"),
        )
        for o in orders.itertuples()
    ]
    sales.append(("C1-0", 11, datetime(2026, 1, 7, 9), "delivered", Decimal("60")))  # 2nd line
    sales_df = spark.createDataFrame(
        sales, "order_id string, customer_sk long, order_ts timestamp, status string, "
        "net_amount_usd decimal(12,2)",
    )  # fmt: skip
    sessions_df = spark.createDataFrame(
        [("C1", datetime(2026, 6, 2, 10)), ("C1", datetime(2026, 6, 3, 0)), (None, None)],
        "customer_id string, session_start timestamp",
    )
    tickets_df = spark.createDataFrame(
        [
            ("C3", datetime(2026, 5, 25), False, None),
            ("C4", datetime(2026, 5, 2), True, datetime(2026, 5, 30)),
        ],
        "customer_id string, created_at timestamp, is_deleted boolean, deleted_at timestamp",
    )
    examples = churn.churn_examples(
        sales_df, dim_df, sessions_df, tickets_df, DATES, as_of=AS_OF
    ).toPandas()
    assert tuple(examples.columns) == churn.EXAMPLE_COLUMNS
    assert "weekly dates" in churn.check_examples(examples, orders, as_of=AS_OF)
    row = examples.set_index(["customer_id", "observation_date"])
    c1 = row.loc[("C1", date(2026, 6, 3))]
    # the version in force, the session of 06-02 (not the one on the day), revenue 10 orders
    assert (c1["segment"], c1["web_sessions_30d"], c1["frequency"]) == ("vip", 1.0, 11.0)
    assert c1["monetary_usd"] == 500.0 and c1["avg_order_value_usd"] == 45.45
    assert row.loc[("C1", date(2026, 5, 27)), "segment"] == "consumer"
    assert row.loc[("C3", date(2026, 5, 27)), "support_tickets"] == 1.0
    # C4's ticket was deleted on 05-30: open on 05-27, gone on 06-03
    assert row.loc[("C4", date(2026, 5, 27)), "support_tickets"] == 1.0
    assert row.loc[("C4", date(2026, 6, 3)), "support_tickets"] == 0.0
    with pytest.raises(ValueError, match="keep dates <= 2026-06-10"):
        churn.churn_examples(
            sales_df, dim_df, sessions_df, tickets_df, [date(2026, 6, 17)], as_of=AS_OF
        )
