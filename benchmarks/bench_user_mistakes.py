"""Every user mistake of the two fault suites, timed through the installed ``eraflow`` script.

The thirty of ``tests/reliability/test_user_mistakes.py`` and the 41 of ``test_bad_input.py``,
each as a fresh process against a copy of a filled store, as a user meets them. Prints one
row per case (exit status, stderr lines, seconds, store unchanged) and the totals, and
writes them to ``benchmarks/results/user_mistakes.json``. The target: exit 2, one line, the
store unchanged, at most 5 s each.

Usage: python benchmarks/bench_user_mistakes.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.reliability.test_bad_input import CASES, snapshot, write_bad_files  # noqa: E402
from tests.reliability.test_user_mistakes import ERAFLOW, MISTAKES, _env  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "user_mistakes.json"


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-mistakes-"))
    filled = work / "filled"
    subprocess.run(
        [
            str(ERAFLOW),
            "run",
            "--store",
            str(filled),
            "--simulator.days",
            "2",
            "--selection-levels",
            "A",
        ],
        env=_env(work),
        capture_output=True,
        check=True,
    )
    files = work / "files"
    files.mkdir()
    write_bad_files(files)
    cases = [("user_mistakes", a) for a, _ in MISTAKES] + [("bad_input", a) for a, _ in CASES]
    rows = []
    for suite, args in cases:
        case = work / f"case-{len(rows)}"
        case.mkdir()
        (case / "a-file").write_text("not a folder")
        (case / "empty").mkdir()
        store = case / "store"
        shutil.copytree(filled, store)
        before = snapshot(store)
        argv = [a.replace("{tmp}", str(case)).replace("{files}", str(files)) for a in args]
        if argv[0] in ("run", "backfill", "matrix", "show") and "--store" not in argv:
            argv += ["--store", str(store)]
        began = time.perf_counter()
        done = subprocess.run(
            [str(ERAFLOW), *argv],
            capture_output=True,
            text=True,
            env=_env(work),
            cwd=case,
            check=False,
        )
        seconds = time.perf_counter() - began
        rows.append(
            {
                "suite": suite,
                "case": " ".join(args)[:70],
                "exit": done.returncode,
                "lines": len(done.stderr.splitlines()),
                "seconds": round(seconds, 2),
                "store_unchanged": snapshot(store) == before,
            }
        )
        shutil.rmtree(case)
    shutil.rmtree(work)
    width = max(len(r["case"]) for r in rows)
    print(f"{'suite':<14} {'case':<{width}} exit lines seconds unchanged")
    for r in rows:
        print(
            f"{r['suite']:<14} {r['case']:<{width}} {r['exit']:>4} {r['lines']:>5} "
            f"{r['seconds']:>7.2f} {r['store_unchanged']!s:>9}"
        )
    good = [r for r in rows if r["exit"] == 2 and r["lines"] == 1 and r["store_unchanged"]]
    seconds = sorted(r["seconds"] for r in rows)
    slowest, median = seconds[-1], seconds[len(seconds) // 2]
    print(
        f"\n{len(good)} of {len(rows)} cases: exit 2, one line, store unchanged; "
        f"slowest {slowest:.2f} s, median {median:.2f} s"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"cases": rows, "slowest_s": slowest}, indent=2))
    print(f"written: {OUT}")
    return 0 if len(good) == len(rows) and slowest <= 5.0 else 1


if __name__ == "__main__":
    sys.exit(main())
