"""The report groups selection reasons by the rule that decided."""

from __future__ import annotations

import pytest

from eraflow.runs.report import reason_kind


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("", "kept"),
        ("too few eras (n=8) for the correlation filter (needs 19)", "kept: too few eras"),
        ("relevant (p=0.001)", "relevant"),
        ("correlated with a__x (r=0.990)", "correlated"),
        ("constant (value 3)", "constant"),
        ("too many NaN (70% of eras > 50%)", "too many"),
        ("all NaN", "all NaN"),
        ("not relevant (p=0.4, fdr 0.05)", "not relevant"),
    ],
)
def test_reason_kind(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind
