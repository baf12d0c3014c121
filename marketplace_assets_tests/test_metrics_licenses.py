"""The license-history metrics' SQL on a hand-made licenses.licenses, on DuckDB and PostgreSQL:
metrics/active_licenses_daily (a license with several versions on one day, one that lapses, an
evaluation that converts) and metrics/trial_conversion_monthly (conversions at day 20, 30, 45, 57 and
100, an evaluation that expires, cohorts around the month)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from marketplace_assets.metrics.licenses import ACTIVE_LICENSES_DAILY_SQL, TRIAL_CONVERSION_MONTHLY_SQL
from marketplace_assets.warehouse import TableRef, Warehouse
from marketplace_assets_tests.test_metrics_query import BACKENDS, empty_warehouse

D = dt.date
LICENSES = TableRef("licenses", "licenses")
# The merge keys of licenses/licenses: one version per license and day, the last row of a day wins.
KEYS = ("app_entitlement_number", "last_updated")
COLUMNS = (
    "app_entitlement_number", "addon_key", "hosting", "app_edition", "license_type", "status",
    "maintenance_start_date", "maintenance_end_date", "last_updated",
)  # fmt: skip
# The data insights of a license (docs/api-notes.md, "Data insights"): its evaluation's start and the days
# it took to convert, as text; NA where they do not apply.
INSIGHTS = ("evaluation_start_date", "days_to_convert_eval")
NO_INSIGHTS = ("NA", "NA")

# (app, hosting, edition) of the licenses below.
A_STD, A_ADV, A_DC = (
    ("app.a", "Cloud", "Standard"),
    ("app.a", "Cloud", "Advanced"),
    ("app.a", "Data Center", "Advanced"),
)
B_CLOUD, B_SERVER, B_FREE = (
    ("app.b", "Cloud", "Standard"),
    ("app.b", "Server", "Standard"),
    ("app.b", "Cloud", "Free"),
)


def _version(license_: str, where: tuple[str, str, str], kind: str, status: str, *days: dt.date) -> tuple:
    """One version: license, app, hosting, edition, type, status, maintenance start, end, last_updated."""
    return (license_, *where, kind, status, *days)


ACTIVE_VERSIONS = [
    # L1: paid and active all along.
    _version("L1", A_STD, "COMMERCIAL", "active", D(2025, 2, 1), D(2026, 1, 31), D(2025, 2, 1)),
    # L2: active, then two versions on 2 March: the later one of the day (cancelled) wins.
    _version("L2", A_STD, "COMMERCIAL", "active", D(2025, 2, 15), D(2026, 2, 14), D(2025, 2, 15)),
    _version("L2", A_STD, "COMMERCIAL", "active", D(2025, 2, 15), D(2026, 2, 14), D(2025, 3, 2)),
    _version("L2", A_STD, "COMMERCIAL", "cancelled", D(2025, 2, 15), D(2025, 3, 2), D(2025, 3, 2)),
    # L3: academic, lapses after 3 March with no new version.
    _version("L3", A_DC, "ACADEMIC", "active", D(2024, 3, 4), D(2025, 3, 3), D(2025, 1, 10)),
    # L4: an evaluation (never paid while it is one) that converts on 4 March.
    _version("L4", B_CLOUD, "EVALUATION", "active", D(2025, 2, 20), D(2025, 3, 22), D(2025, 2, 20)),
    _version("L4", B_CLOUD, "COMMERCIAL", "active", D(2025, 2, 20), D(2025, 4, 3), D(2025, 3, 4)),
    # L5: first seen after the window.
    _version("L5", B_CLOUD, "COMMERCIAL", "active", D(2025, 3, 10), D(2026, 3, 9), D(2025, 3, 10)),
    # L6: free.
    _version("L6", B_FREE, "COMMUNITY", "active", D(2025, 1, 1), D(2026, 1, 1), D(2025, 1, 1)),
    # L7: changes edition on 3 March: counted once a day, in the edition of the day's version.
    _version("L7", A_STD, "COMMERCIAL", "active", D(2025, 2, 1), D(2026, 1, 31), D(2025, 2, 1)),
    _version("L7", A_ADV, "COMMERCIAL", "active", D(2025, 2, 1), D(2026, 1, 31), D(2025, 3, 3)),
    # L8: type and status in other cases.
    _version("L8", B_SERVER, "commercial", "Active", D(2024, 6, 1), D(2025, 6, 1), D(2024, 6, 1)),
]


def _on(day: int, *counts: tuple[str, str, str, int]) -> list[tuple]:
    return [(D(2025, 3, day), *c) for c in counts]


EXPECTED_ACTIVE = sorted(
    _on(1, (*A_STD, 3), (*A_DC, 1), (*B_SERVER, 1))  # L1 L2 L7; L3; L8
    + _on(2, (*A_STD, 2), (*A_DC, 1), (*B_SERVER, 1))  # L2 cancelled
    + _on(3, (*A_STD, 1), (*A_ADV, 1), (*A_DC, 1), (*B_SERVER, 1))  # L7 now Advanced; L3's last day
    + _on(4, (*A_STD, 1), (*A_ADV, 1), (*B_CLOUD, 1), (*B_SERVER, 1))  # L3 lapsed; L4 paid
    + _on(5, (*A_STD, 1), (*A_ADV, 1), (*B_CLOUD, 1), (*B_SERVER, 1))
)


def _evaluation(license_: str, app: str, hosting: str, kind: str, started: dt.date) -> tuple:
    return (
        license_,
        app,
        hosting,
        "Standard",
        kind,
        "active",
        started,
        started + dt.timedelta(days=30),
        started,
    )


def _paid(license_: str, app: str, hosting: str, on: dt.date, kind: str = "COMMERCIAL") -> tuple:
    return (license_, app, hosting, "Standard", kind, "active", on, on + dt.timedelta(days=365), on)


EVALUATION_VERSIONS = [
    # E1: started 5 January, paid 25 January: day 20.
    _evaluation("E1", "app.a", "Cloud", "EVALUATION", D(2025, 1, 5)),
    _paid("E1", "app.a", "Cloud", D(2025, 1, 25)),
    # E2: started 10 January, paid 24 February: day 45.
    _evaluation("E2", "app.a", "Cloud", "net_new_evaluation", D(2025, 1, 10)),
    _paid("E2", "app.a", "Cloud", D(2025, 2, 24)),
    # E3: started 31 January, paid 11 May: day 100, after every window.
    _evaluation("E3", "app.a", "Cloud", "net_new_evaluation", D(2025, 1, 31)),
    _paid("E3", "app.a", "Cloud", D(2025, 5, 11)),
    # E4: started 15 January, expired a month later, never paid.
    _evaluation("E4", "app.a", "Cloud", "EVALUATION", D(2025, 1, 15)),
    _version("E4", A_STD, "EVALUATION", "inactive", D(2025, 1, 15), D(2025, 2, 14), D(2025, 2, 15)),
    # E5: Data Center, started 20 January, paid (academic) 19 February: day 30, within 30 days.
    _evaluation("E5", "app.a", "Data Center", "EVALUATION", D(2025, 1, 20)),
    _paid("E5", "app.a", "Data Center", D(2025, 2, 19), kind="ACADEMIC"),
    # E6: December's cohort (paid in January).
    _evaluation("E6", "app.b", "Cloud", "EVALUATION", D(2024, 12, 28)),
    _paid("E6", "app.b", "Cloud", D(2025, 1, 2)),
    # E7: February's cohort.
    _evaluation("E7", "app.b", "Cloud", "EVALUATION", D(2025, 2, 1)),
    # E8: a paid license evaluating an upgrade on 12 January; paid before it, not after: no conversion.
    _paid("E8", "app.a", "Cloud", D(2024, 6, 1)),
    _evaluation("E8", "app.a", "Cloud", "upgrade_evaluation", D(2025, 1, 12)),
    # E9: started 3 January, revised on 8 January (still an evaluation), paid 1 March: day 57.
    _evaluation("E9", "app.a", "Cloud", "EVALUATION", D(2025, 1, 3)),
    _version("E9", A_STD, "EVALUATION", "active", D(2025, 1, 3), D(2025, 2, 2), D(2025, 1, 8)),
    _paid("E9", "app.a", "Cloud", D(2025, 3, 1)),
    # E10: converted before the history was loaded, so only its paid version of 20 April is stored; its
    # data insights say it was an evaluation from 7 January that converted on day 25.
    (*_paid("E10", "app.a", "Cloud", D(2025, 4, 20)), "2025-01-07", "25"),
    # E11: bought outright (insights NA), in the history only as paid: no evaluation.
    _paid("E11", "app.a", "Cloud", D(2025, 1, 9)),
]
JAN, FEB = D(2025, 1, 1), D(2025, 2, 1)
HISTORY_THROUGH = D(2025, 5, 11)  # E3's conversion, the latest version
# month, app, hosting, evaluation type, evaluations, within 30 / 60 / 90 days, converted to date
EXPECTED_JANUARY = sorted(
    [
        (JAN, "app.a", "Cloud", "EVALUATION", 3, 1, 2, 2, 2, HISTORY_THROUGH),  # E1 (20), E4, E9 (57)
        (JAN, "app.a", "Cloud", "net_new_evaluation", 2, 0, 1, 1, 2, HISTORY_THROUGH),  # E2 (45), E3 (100)
        (JAN, "app.a", "Cloud", "upgrade_evaluation", 1, 0, 0, 0, 0, HISTORY_THROUGH),  # E8
        (JAN, "app.a", "Data Center", "EVALUATION", 1, 1, 1, 1, 1, HISTORY_THROUGH),  # E5 (30)
        # E10 (25): its evaluation version was never stored, so its type is unknown.
        (JAN, "app.a", "Cloud", None, 1, 1, 1, 1, 1, HISTORY_THROUGH),
    ],
    key=str,
)


def licenses_frame(versions: list[tuple]) -> pl.DataFrame:
    """The versions as licenses/licenses stores them; a version without data insights gets NA."""
    rows = [v if len(v) > len(COLUMNS) else (*v, *NO_INSIGHTS) for v in versions]
    return pl.DataFrame([dict(zip((*COLUMNS, *INSIGHTS), v, strict=True)) for v in rows])


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    return empty_warehouse(request, tmp_path, monkeypatch)


def test_active_paid_licenses_per_day(warehouse: Warehouse) -> None:
    # Written as licenses/licenses writes: a merge on its keys, so L2's two rows of 2 March are one.
    result = warehouse.merge(LICENSES, licenses_frame(ACTIVE_VERSIONS), KEYS)
    assert result.duplicates_dropped == 1
    window = warehouse.query(ACTIVE_LICENSES_DAILY_SQL, {"start": D(2025, 3, 1), "end": D(2025, 3, 6)})
    assert window.columns == ["day", "addon_key", "hosting", "edition", "active_licenses"]
    assert window.schema["day"] == pl.Date and window.schema["active_licenses"] == pl.Int64
    assert sorted(window.rows()) == EXPECTED_ACTIVE
    # One day's partition gives that day's rows only.
    day = warehouse.query(ACTIVE_LICENSES_DAILY_SQL, {"start": D(2025, 3, 4), "end": D(2025, 3, 5)})
    assert sorted(day.rows()) == [r for r in EXPECTED_ACTIVE if r[0] == D(2025, 3, 4)]


def test_trial_conversion_per_cohort_month(warehouse: Warehouse) -> None:
    warehouse.merge(LICENSES, licenses_frame(EVALUATION_VERSIONS), KEYS)
    january = warehouse.query(TRIAL_CONVERSION_MONTHLY_SQL, {"start": JAN, "end": FEB})
    assert january.columns == [
        "month", "addon_key", "hosting", "evaluation_type", "evaluations", "converted_within_30_days",
        "converted_within_60_days", "converted_within_90_days", "converted_to_date", "history_through",
    ]  # fmt: skip
    assert sorted(january.rows(), key=str) == EXPECTED_JANUARY
    february = warehouse.query(TRIAL_CONVERSION_MONTHLY_SQL, {"start": FEB, "end": D(2025, 3, 1)})
    assert february.rows() == [(FEB, "app.b", "Cloud", "EVALUATION", 1, 0, 0, 0, 0, HISTORY_THROUGH)]
    december = warehouse.query(TRIAL_CONVERSION_MONTHLY_SQL, {"start": D(2024, 12, 1), "end": JAN})
    assert december.rows() == [
        (D(2024, 12, 1), "app.b", "Cloud", "EVALUATION", 1, 1, 1, 1, 1, HISTORY_THROUGH)
    ]
