"""The bad-input matrix: every mistake exits 2 with one line naming it, and writes nothing.

Each case runs the ``eraflow`` command in process against a store filled by a real run; the
store's files (names, sizes and contents) must be byte for byte what they were.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from flows.cli import main

KJ = Path(__file__).resolve().parents[3] / "shared" / "data" / "greenhouse" / "knudjepsen"


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` and the hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, prefect_api: None) -> Path:
    """A store that holds one small real run (what a mistake must not touch)."""
    store = tmp_path_factory.mktemp("filled") / "store"
    assert (
        main(
            [
                "run",
                "--store",
                str(store),
                "--simulator.days",
                "2",
                "--empty-tsfresh-levels",
                "--selection-levels",
                "A",
            ]
        )
        == 0
    )
    return store


def write_bad_files(folder: Path) -> Path:
    """Mapping and catalogue files, bad in the ways the cases need, into ``folder``."""
    texts = {
        "broken.toml": "[[sources]\nname = ",
        "unknown_field.toml": '[[sources]]\nname = "x"\nfiles = ["*.csv"]\ncolour = "red"\n',
        "no_files.toml": '[[sources]]\nname = "x"\nfiles = ["nothing-*.csv"]\nentity = "e"\n'
        'time = { columns = ["t"] }\ncolumns = [{ column = "a", sensor = "air_temp_c" }]\n',
        "bad_zone.toml": '[[sources]]\nname = "x"\nfiles = ["*.csv"]\nentity = "e"\n'
        'time = { columns = ["t"], timezone = "Mars/Olympus" }\n'
        'columns = [{ column = "a", sensor = "air_temp_c" }]\n',
        "cat_broken.toml": "[air_temp_c\nunit = ",
        "cat_bad_gap.toml": '[air_temp_c]\nmax_fill_gap = "soon"\n',
        "cat_bad_kind.toml": '[air_temp_c]\nkind = "liquid"\n',
    }
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "data").mkdir(exist_ok=True)
    return folder


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Mapping and catalogue files, bad in the ways the cases need."""
    return write_bad_files(tmp_path)


# (arguments after the store, expected words in the one error line)
CASES: list[tuple[list[str], str]] = [
    (["run", "--source", "nowhere"], "needs data_root"),
    (["run", "--source", "nowhere", "--data-root", "{files}/data"], "neither a preset"),
    (["run", "--source", "knudjepsen"], "needs data_root"),
    (["run", "--source", "knudjepsen", "--data-root", "/no/such/folder"], "not a folder"),
    (["run", "--start", "2024-02-01", "--end", "2024-01-01"], "empty range"),
    (["run", "--start", "2024-13-01"], "start"),
    (["run", "--end", "yesterday-ish"], "end"),
    (["run", "--freq", "bad"], "freq"),
    (["run", "--freq", "1M"], "not a duration"),
    (["run", "--device", "gpu"], "no CUDA device"),
    (["run", "--entities", "sim_a", "nobody"], "not simulated"),
    (["run", "--simulator.days", "1"], "greater than or equal to 2"),
    (["run", "--correlation-threshold", "1.5"], "less than or equal to 1"),
    (["run", "--fdr-level", "0"], "greater than 0"),
    (["run", "--era-method", "guess"], "guess"),
    (["run", "--features-profile", "huge"], "huge"),
    (["run", "--tsfresh-levels", "Z"], "Z"),
    (["run", "--store-block", "noslash"], "no saved block"),
    (["run", "--source", "postgres"], "needs source_block"),
    (
        [
            "run",
            "--source",
            "postgres",
            "--source-block",
            "b",
            "--postgres-source",
            '{"table": "x; drop table y"}',
        ],
        "table",
    ),
    (
        [
            "run",
            "--source",
            "postgres",
            "--source-block",
            "b",
            "--postgres-source",
            '{"tabel": "x"}',
        ],
        "tabel",
    ),
    (["run", "--era-horizon", "soon"], "duration"),
    (["run", "--child-timeout", "0s"], "positive duration"),
    (["run", "--cpu-workers", "0"], "greater than or equal to 1"),
    (["run", "--max-batch-rows", "0"], "greater than or equal to 1"),
    (["run", "--no-such-option", "1"], "no-such-option"),
    (["run", "--catalogue", "{files}/missing.toml"], "missing.toml"),
    (["run", "--catalogue", "{files}/cat_broken.toml"], "cat_broken.toml"),
    (["run", "--catalogue", "{files}/cat_bad_gap.toml"], "max_fill_gap"),
    (["run", "--catalogue", "{files}/cat_bad_kind.toml"], "kind"),
    (["run", "--source", "{files}/broken.toml", "--data-root", "{files}/data"], "broken.toml"),
    (["run", "--source", "{files}/unknown_field.toml", "--data-root", "{files}/data"], "colour"),
    (
        ["run", "--source", "{files}/no_files.toml", "--data-root", "{files}/data"],
        "no file matches",
    ),
    (["run", "--source", "{files}/bad_zone.toml", "--data-root", "{files}/data"], "Mars"),
    (
        ["run", "--source", "knudjepsen", "--data-root", str(KJ), "--sources", "nope"],
        "not in the mapping",
    ),
    (["backfill", "--end", "2024-01-05"], "needs --start and --end"),
    (["matrix", "--scope", "x", "--level", "A", "--out", "{files}/m.txt"], ".parquet or a .csv"),
    (
        ["matrix", "--scope", "nobody", "--level", "A", "--out", "{files}/m.csv"],
        "no feature matrix stored",
    ),
    (["catalogue", "--sensor", "nope"], "no sensor"),
    (
        ["load", "--mapping", "knudjepsen", "--data-root", "{files}/data", "--layout", "diagonal"],
        "diagonal",
    ),
    (["show", "--run-id", "no-such-run"], "no run summary"),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_a_mistake_exits_2_with_one_line_and_writes_nothing(
    args: list[str],
    expected: str,
    filled: Path,
    files: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "store"
    shutil.copytree(filled, store)
    before = snapshot(store)
    argv = [a.replace("{files}", str(files)) for a in args]
    if argv[0] in ("run", "backfill", "matrix", "show"):
        argv += ["--store", str(store)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err, err
    assert len(err.splitlines()) <= 2 and "Traceback" not in err, err  # one (wrapped) line
    assert snapshot(store) == before
    assert len(CASES) >= 30


def test_a_flow_run_given_an_impossible_batch_fails_before_any_work(
    prefect_api: None, filled: Path
) -> None:
    from flows.era_features import era_features_flow

    before = snapshot(filled)
    batch = {
        "entity": "sim_a",
        "level": "Z",
        "start": "2024-01-02",
        "end": "2024-01-01",
        "eras": 1,
        "rows": 1,
        "first_era_id": 0,
        "last_era_id": 0,
    }
    backwards = batch | {"level": "A"}  # end before start
    fine_level = batch | {"start": "2024-01-01", "end": "2024-01-02"}  # level Z
    state = era_features_flow(
        batches=[fine_level, backwards], config={"store": str(filled)}, return_state=True
    )
    assert state.is_failed()
    assert "level" in str(state.message) and "not after its start" in str(state.message)
    assert snapshot(filled) == before
