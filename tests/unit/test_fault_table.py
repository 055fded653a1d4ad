"""The fault suite's table picks up any fault case that records the table's properties."""

from __future__ import annotations

import pytest

from tests.faults.conftest import TABLE_COLUMNS, fault_rows


def report(
    when: str, outcome: str, properties: list[tuple[str, object]], **extra: object
) -> pytest.TestReport:
    return pytest.TestReport(
        "tests/faults/test_x.py::test_x",
        ("tests/faults/test_x.py", 1, "test_x"),
        {},
        outcome,  # type: ignore[arg-type]  # the Literal of pytest's own outcomes
        None,
        when,  # type: ignore[arg-type]
        user_properties=properties,
        **extra,
    )


def test_one_row_per_fault_case_with_its_properties_and_outcome() -> None:
    killed = [("fault", "worker killed"), ("injected", 1), ("lost", 0),
              ("alert_ids_diverged", 0), ("recovery_s", 4.2)]  # fmt: skip
    rows = fault_rows(
        [
            report("setup", "passed", []),
            report("call", "passed", killed),
            report("call", "skipped", [("fault", "shuffled"), ("lost", 0)], wasxfail="bug"),
            report("call", "passed", [("unrelated", 1)]),
        ]
    )
    assert rows == [
        {**dict(killed), "outcome": "passed"},
        {"fault": "shuffled", "injected": "", "lost": 0, "alert_ids_diverged": "",
         "recovery_s": "", "outcome": "xfail"},
    ]  # fmt: skip
    assert tuple(rows[0])[: len(TABLE_COLUMNS)] == TABLE_COLUMNS
