"""The date dimension: holiday rules against published US federal calendars, every attribute
recomputed with Python's datetime, the data's whole-year range, and the check that catches the
classic mistakes (a fiscal year named by its start, Sunday = 1, non-ISO weeks, a missing last
day, a duplicated day, a wrong unknown member)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from pyspark.sql import functions as F

from lakehouse.gold import UNKNOWN_KEY, dates


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "gold_dates_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


def d(text: str) -> date:
    return date.fromisoformat(text)


# The US Office of Personnel Management's published federal holidays (observed days included).
OPM_2021 = {
    d("2021-01-01"): "New Year's Day",
    d("2021-01-18"): "Martin Luther King Jr. Day",
    d("2021-02-15"): "Washington's Birthday",
    d("2021-05-31"): "Memorial Day",
    d("2021-06-18"): "Juneteenth National Independence Day (observed)",
    d("2021-06-19"): "Juneteenth National Independence Day",
    d("2021-07-04"): "Independence Day",
    d("2021-07-05"): "Independence Day (observed)",
    d("2021-09-06"): "Labor Day",
    d("2021-10-11"): "Columbus Day",
    d("2021-11-11"): "Veterans Day",
    d("2021-11-25"): "Thanksgiving Day",
    d("2021-12-24"): "Christmas Day (observed)",
    d("2021-12-25"): "Christmas Day",
    d("2021-12-31"): "New Year's Day (observed)",  # 1 January 2022 is a Saturday
}
OPM_2026 = {
    d("2026-01-01"): "New Year's Day",
    d("2026-01-19"): "Martin Luther King Jr. Day",
    d("2026-02-16"): "Washington's Birthday",
    d("2026-05-25"): "Memorial Day",
    d("2026-06-19"): "Juneteenth National Independence Day",
    d("2026-07-03"): "Independence Day (observed)",
    d("2026-07-04"): "Independence Day",
    d("2026-09-07"): "Labor Day",
    d("2026-10-12"): "Columbus Day",
    d("2026-11-11"): "Veterans Day",
    d("2026-11-26"): "Thanksgiving Day",
    d("2026-12-25"): "Christmas Day",
}


# ------------------------------------------------------------------------------------------------
# Holiday rules
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("year", "month", "weekday", "n", "expected"),
    [
        (2026, 11, dates.THURSDAY, 4, "2026-11-26"),  # Thanksgiving
        (2026, 1, dates.MONDAY, 3, "2026-01-19"),  # the 1st is a Thursday
        (2021, 5, dates.MONDAY, -1, "2021-05-31"),  # five Mondays: the last is not the 4th
        (2021, 5, dates.MONDAY, 4, "2021-05-24"),
        (2026, 12, dates.THURSDAY, -1, "2026-12-31"),  # the month's last day, December
        (2026, 6, dates.MONDAY, 1, "2026-06-01"),  # the 1st is that weekday
        (2024, 2, dates.THURSDAY, -1, "2024-02-29"),  # leap day
    ],
)
def test_nth_weekday(year, month, weekday, n, expected):
    assert dates.nth_weekday(year, month, weekday, n) == d(expected)


def test_nth_weekday_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n 5 must be 1-4, or -1"):
        dates.nth_weekday(2026, 5, dates.MONDAY, 5)
    with pytest.raises(ValueError, match="weekday 7 is not"):
        dates.nth_weekday(2026, 5, 7, 1)


def test_observed_moves_weekend_holidays_to_the_nearest_weekday():
    assert dates.observed(d("2026-07-04")) == d("2026-07-03")  # Saturday -> Friday
    assert dates.observed(d("2021-07-04")) == d("2021-07-05")  # Sunday -> Monday
    assert dates.observed(d("2026-11-11")) == d("2026-11-11")  # a Wednesday stays


@pytest.mark.parametrize(("year", "published"), [(2021, OPM_2021), (2026, OPM_2026)])
def test_us_federal_holidays_match_the_published_calendar(year, published):
    assert dates.holidays_between(date(year, 1, 1), date(year, 12, 31)) == published


def test_juneteenth_is_a_holiday_from_2021_only():
    names_2020 = {name for _, name in dates.us_federal_holidays(2020)}
    assert not any("Juneteenth" in name for name in names_2020)
    assert len(dates.us_federal_holidays(2020)) == 11  # 10 holidays + July 4th observed (Sat)


def test_new_years_day_observed_in_december_of_the_year_before():
    # asked for 2021 only, the range still holds 2022's New Year's Day observed on 2021-12-31
    assert dates.holidays_between(d("2021-12-01"), d("2021-12-31")) == {
        d("2021-12-24"): "Christmas Day (observed)",
        d("2021-12-25"): "Christmas Day",
        d("2021-12-31"): "New Year's Day (observed)",
    }


def test_combined_calendars_join_names_of_one_day():
    def shutdown(year):
        return [(date(year, 12, 24), "Company shutdown"), (date(year, 12, 25), "Company shutdown")]

    calendar = dates.combine_calendars(dates.us_federal_holidays, shutdown)
    assert dates.holidays_between(d("2026-12-24"), d("2026-12-25"), calendar) == {
        d("2026-12-24"): "Company shutdown",
        d("2026-12-25"): "Christmas Day / Company shutdown",
    }
    with pytest.raises(ValueError, match="at least one calendar"):
        dates.combine_calendars()


# ------------------------------------------------------------------------------------------------
# The dimension
# ------------------------------------------------------------------------------------------------
def test_date_dimension_is_right_on_every_day_and_fiscal_start(spark):
    start, end = d("2023-12-25"), d("2025-01-06")  # a leap year and ISO weeks across new year
    dim_df = dates.date_dimension(spark, start, end, fiscal_year_start_month=7).cache()
    dates.check_dim_date(
        dim_df,
        start,
        end,
        fiscal_year_start_month=7,
        holidays=dates.holidays_between(start, end),
    )
    assert dim_df.count() == (end - start).days + 1 + 1  # every day + the unknown member
    assert [(f.name, f.dataType) for f in dim_df.schema] == [
        (f.name, f.dataType) for f in dates.DIM_DATE_SCHEMA
    ]
    for month in (1, 10):  # a calendar fiscal year, and another start
        other = dates.date_dimension(
            spark, start, end, fiscal_year_start_month=month, include_unknown=False
        )
        dates.check_dim_date(other, start, end, fiscal_year_start_month=month)


def test_boundary_days(spark):
    dim_df = dates.date_dimension(
        spark, d("2024-12-28"), d("2027-01-02"), fiscal_year_start_month=7, include_unknown=False
    )
    got = {
        r.date: r
        for r in dim_df.where(
            F.col("date").isin(d("2024-12-30"), d("2026-06-30"), d("2026-07-01"), d("2027-01-01"))
        ).collect()
    }
    # ISO week 1 of 2025 starts on Monday 2024-12-30; 2027-01-01 is in week 53 of 2026
    assert (got[d("2024-12-30")].week_of_year, got[d("2024-12-30")].iso_year) == (1, 2025)
    assert (got[d("2027-01-01")].week_of_year, got[d("2027-01-01")].iso_year) == (53, 2026)
    assert got[d("2027-01-01")].date_key == 20270101
    # the fiscal year starting July 2026 is FY2027; June 2026 closes FY2026
    june, july = got[d("2026-06-30")], got[d("2026-07-01")]
    assert (june.fiscal_year, june.fiscal_quarter, june.fiscal_month) == (2026, 4, 12)
    assert (july.fiscal_year, july.fiscal_quarter, july.fiscal_month) == (2027, 1, 1)
    assert (july.day_of_week, july.day_name, july.is_weekend) == (3, "Wednesday", False)


def test_unknown_member(spark):
    unknown = (
        dates.date_dimension(spark, d("2026-01-01"), d("2026-01-31"))
        .where(F.col("date_key") == UNKNOWN_KEY)
        .collect()
    )
    assert len(unknown) == 1
    values = unknown[0].asDict()
    assert values.pop("month_name") == values.pop("day_name") == "Unknown"
    assert values.pop("date_key") == UNKNOWN_KEY
    assert set(values.values()) == {None}


def test_arguments_are_checked(spark):
    with pytest.raises(ValueError, match="fiscal_year_start_month 13 is not a month"):
        dates.date_dimension(spark, d("2026-01-01"), d("2026-12-31"), fiscal_year_start_month=13)
    with pytest.raises(ValueError, match="fiscal_year_start_month '7' is not a month"):
        dates.with_fiscal_calendar("7")
    with pytest.raises(ValueError, match="end 2025-12-31 is before start 2026-01-01"):
        dates.date_spine(spark, d("2026-01-01"), d("2025-12-31"))
    with pytest.raises(ValueError, match="is not a datetime.date"):
        dates.date_spine(spark, datetime(2026, 1, 1), d("2026-12-31"))


# ------------------------------------------------------------------------------------------------
# The check catches wrong dimensions
# ------------------------------------------------------------------------------------------------
START, END = d("2026-01-01"), d("2026-12-31")


@pytest.fixture(scope="module")
def good_df(spark):
    return dates.date_dimension(spark, START, END, fiscal_year_start_month=7).cache()


def test_check_accepts_the_reference(good_df):
    dates.check_dim_date(
        good_df, START, END, fiscal_year_start_month=7, holidays=dates.holidays_between(START, END)
    )


@pytest.mark.parametrize(
    ("column", "wrong", "message"),
    [
        # the fiscal year named by the year in which it starts
        (
            "fiscal_year",
            "year - CAST(month < 7 AS INT)",
            r"fiscal_year on 365 day\(s\).*named by the calendar year in which",
        ),
        # Spark's dayofweek: Sunday = 1 ... Saturday = 7
        ("day_of_week", "dayofweek(date)", r"day_of_week on 365 day\(s\).*not F.dayofweek"),
        # week 1 = 1-7 January instead of the ISO week
        (
            "week_of_year",
            "CAST(ceil(dayofyear(date) / 7) AS INT)",
            r"week_of_year on.*7-day blocks",
        ),
        # a weekend of Friday and Saturday
        ("is_weekend", "dayofweek(date) IN (6, 7)", r"is_weekend on"),
        # a key of days since 1970 instead of YYYYMMDD
        ("date_key", "CAST(unix_date(date) AS INT)", r"date_key on 365 day\(s\)"),
        # fiscal quarters counted from January
        ("fiscal_quarter", "quarter", r"fiscal_quarter on 365 day\(s\)"),
    ],
)
def test_check_catches_a_wrong_column(good_df, column, wrong, message):
    wrong_df = good_df.withColumn(
        column, F.when(F.col("date").isNotNull(), F.expr(wrong)).otherwise(F.col(column))
    )
    with pytest.raises(AssertionError, match=message):
        dates.check_dim_date(wrong_df, START, END, fiscal_year_start_month=7)


def test_check_catches_a_missing_last_day_and_a_duplicate(good_df):
    with pytest.raises(AssertionError, match=r"1 missing day\(s\), first 2026-12-31.*inclusive"):
        dates.check_dim_date(good_df.where(F.col("date") != END), START, END)
    doubled = good_df.unionByName(good_df.where(F.col("date") == d("2026-03-01")))
    with pytest.raises(AssertionError, match=r"1 day\(s\) more than once, first 2026-03-01"):
        dates.check_dim_date(doubled, START, END)
    with pytest.raises(AssertionError, match="outside 2026-01-01..2026-12-30"):
        dates.check_dim_date(good_df, START, d("2026-12-30"))


def test_check_catches_a_wrong_unknown_member(good_df):
    twice = good_df.unionByName(good_df.where(F.col("date").isNull()))
    with pytest.raises(AssertionError, match="2 rows without a date"):
        dates.check_dim_date(twice, START, END)
    zero_key = good_df.withColumn(
        "date_key", F.when(F.col("date").isNull(), F.lit(0)).otherwise(F.col("date_key"))
    )
    with pytest.raises(AssertionError, match="unknown member.*'date_key': 0"):
        dates.check_dim_date(zero_key, START, END)


def test_check_catches_a_wrong_holiday_rule(spark):
    def memorial_day_as_fourth_monday(year):
        return [
            (dates.nth_weekday(year, 5, dates.MONDAY, 4), "Memorial Day")
            if name == "Memorial Day"
            else (day, name)
            for day, name in dates.us_federal_holidays(year)
        ]

    start, end = d("2021-01-01"), d("2021-12-31")
    wrong_df = dates.date_dimension(spark, start, end, calendar=memorial_day_as_fourth_monday)
    with pytest.raises(AssertionError, match="holiday_name on 2 day.*2021-05-24"):
        dates.check_dim_date(wrong_df, start, end, holidays=OPM_2021)


# ------------------------------------------------------------------------------------------------
# The data's range and ensure_dim_date
# ------------------------------------------------------------------------------------------------
def test_data_date_range_spans_whole_years_of_every_event(spark):
    orders = spark.createDataFrame(
        [(datetime(2025, 12, 31, 23, 59),), (datetime(2026, 3, 1),), (None,)], "order_ts timestamp"
    )
    tickets = spark.createDataFrame(
        [(datetime(2026, 1, 2), datetime(2027, 1, 1, 0, 0, 1))],
        "created_at timestamp, updated_at timestamp",
    )
    empty = spark.createDataFrame([(None,)], "event_ts timestamp")
    spark.sql("CREATE SCHEMA IF NOT EXISTS range_test")
    for name, df in (("orders", orders), ("tickets", tickets), ("empty", empty)):
        df.write.format("delta").mode("overwrite").saveAsTable(f"range_test.{name}")
    columns = {
        "range_test.orders": ["order_ts"],
        "range_test.tickets": ["created_at", "updated_at"],
        "range_test.empty": ["event_ts"],
    }
    assert dates.data_date_range(spark, columns) == (d("2025-01-01"), d("2027-12-31"))
    with pytest.raises(ValueError, match="no event date in range_test.empty"):
        dates.data_date_range(spark, {"range_test.empty": ["event_ts"]})


def test_ensure_dim_date_builds_once_with_comments(spark, tmp_path):
    from lakehouse import DeltaTable

    # Silver inputs that exist already: ensure_silver_inputs leaves them as they are
    spark.sql("CREATE SCHEMA IF NOT EXISTS silver")
    one_day = spark.createDataFrame([(datetime(2026, 5, 4, 12),)], "ts timestamp")
    for table, columns in dates.EVENT_DATE_COLUMNS.items():
        one_day.select(*(F.col("ts").alias(c) for c in columns)).write.format("delta").mode(
            "overwrite"
        ).saveAsTable(table)

    assert dates.ensure_dim_date(spark, tmp_path) == dates.DIM_DATE
    table = DeltaTable.forName(spark, dates.DIM_DATE)
    version = table.history(1).select("version").first()[0]
    assert table.detail().first()["description"] == dates.TABLE_COMMENT
    dates.check_dim_date(spark.table(dates.DIM_DATE), START, END)
    assert dates.ensure_dim_date(spark, tmp_path) == dates.DIM_DATE  # exists: left alone
    assert table.history(1).select("version").first()[0] == version
