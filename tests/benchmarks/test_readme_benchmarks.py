"""The benchmark commands of the README's figures table run as written, on a fresh store.

Their timings are not asserted (a benchmark prints them); what each run must show is: it ends
well, it compares the same things the README says (eraflow's PELT boundaries equal ruptures'
and skchange's; the engine's level-A values equal tsfresh's except the documented
``permutation_entropy`` ties), and it writes its JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GREENHOUSE, REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realdata,
    pytest.mark.skipif(not GREENHOUSE.exists(), reason="../shared/data/greenhouse is absent"),
]


def run_benchmark(args: list[str], folder: Path) -> str:
    """``python benchmarks/<args>`` in ``folder`` (its temporary store there too)."""
    env = os.environ | {
        "PYTHONPATH": str(REPO),
        "PREFECT_HOME": str(folder / "prefect-home"),
        "TMPDIR": str(folder),
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / args[0]), *args[1:]],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_eras_as_written(tmp_path: Path) -> None:
    out = run_benchmark(["bench_eras.py"], tmp_path)
    assert "Knud Jepsen NO3 (real)" in out
    compared = [line for line in out.splitlines() if "(equal)" in line or "DIFFERENT" in line]
    assert len(compared) == 5 and not any("DIFFERENT" in line for line in compared)
    assert "exact PELT normal d=4, n=105697, c=4, floor 0.01, min 3 h, 715 bkps" in out


def test_bench_catalogue_level_a_as_written(tmp_path: Path) -> None:
    out = run_benchmark(["bench_catalogue.py", "--levels", "A"], tmp_path)
    result = json.loads((tmp_path / "bench_catalogue.json").read_text())
    assert result["levels"] == ["A"] and result["features"] == 785
    assert result["engine_threads"] == 2 and result["tsfresh_n_jobs"] == 2
    assert f"{result['segments']:,} segments, {result['values']:,} values" in out
    differing = {name for name, count in result["differing"].items() if count}
    assert differing <= {"permutation_entropy"}  # the documented ties only
    assert sum(result["differing"].values()) < 0.01 * result["segments"] * result["features"]


def test_bench_prefect_overhead_month_as_written(tmp_path: Path) -> None:
    out = run_benchmark(["bench_prefect_overhead.py", "--pairs", "1"], tmp_path)
    result = json.loads((REPO / "benchmarks" / "results" / "prefect_overhead.json").read_text())
    assert result["range"] == "month" and result["server"] == "private"
    (pair,) = result["pairs"]
    assert all(v.startswith("same") for v in pair["tables"].values()), pair["tables"]
    a, b = pair["prefect"], pair["plain"]
    assert pair["cpu_share"] == round((a["cpu_s"] - b["cpu_s"]) / a["cpu_s"], 3)
    assert a["task_runs_total"] > 0 and b["stages"]["features"] > 0
    assert 1.0 < a["server_cpu_s"] < a["cpu_s"]  # a server's start alone takes seconds of CPU
    assert "| CPU s |" in out and "month (2015-10-01..2015-11-01), 1 pairs" in out
    assert "| the Prefect server's CPU s (a floor of Prefect's share) |" in out
