"""The README is executable: every ``eraflow`` command it shows runs here, as written.

Each shell block that holds an ``eraflow`` command runs as one bash script in a fresh folder
laid out like the checkout (``.venv`` is the project's, ``../shared`` the real exports), so
every command goes through the installed ``eraflow`` script and every block starts from an
empty store. Each command's exit status, output and what it stores are checked by the rule in
``CHECKS`` that matches it; a README command no rule matches fails the suite, so a README
change comes with its test. Only two things are substituted, for isolation: the PostgreSQL
database name (a fresh database per run) and the server port (a free one).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from tests.conftest import GREENHOUSE, REPO
from tests.pg import ADMIN_DSN
from tests.prefect_server import free_port

README = REPO / "README.md"
VENV = REPO / ".venv"


@dataclass(frozen=True)
class Block:
    """A fenced block of the README: its language, text and the heading above it."""

    language: str
    text: str
    heading: str


@dataclass(frozen=True)
class Done:
    """What one command did, read back after its block ran."""

    command: str
    rc: int
    out: str
    err: str
    folder: Path


def readme_blocks() -> list[Block]:
    """Every fenced block of the README, in order."""
    blocks, heading = [], ""
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("#") and not lines[i].startswith("#!"):
            heading = lines[i].lstrip("#").strip()
        if lines[i].startswith("```"):
            language, body = lines[i][3:].strip(), []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(language, "\n".join(body), heading))
        i += 1
    return blocks


def commands(text: str) -> list[str]:
    """The block's commands: continuation lines joined, a heredoc kept with its command."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        command = [line]
        while command[-1].rstrip().endswith("\\"):
            i += 1
            command.append(lines[i])
        heredoc = re.search(r"<<'?(\w+)'?", line)
        if heredoc:
            while lines[i] != heredoc.group(1):
                i += 1
                command.append(lines[i])
        out.append("\n".join(command))
        i += 1
    return out


def eraflow_blocks() -> dict[str, Block]:
    """The shell blocks that hold an ``eraflow`` command, named by their section."""
    found = [
        b
        for b in readme_blocks()
        if b.language == "bash" and any("eraflow " in c for c in commands(b.text))
    ]
    return {re.sub(r"\W+", "-", b.heading.lower()).strip("-"): b for b in found}


# ---- what each command must do ---------------------------------------------------------------
Check = Callable[[Done], None]


def prints(*words: str) -> Check:
    def check(done: Done) -> None:
        for word in words:
            assert word in done.out, f"{done.command!r} did not print {word!r}:\n{done.out}"

    return check


def stores(*entities: str) -> Check:
    def check(done: Done) -> None:
        eras = pd.read_parquet(done.folder / "eraflow-store" / "eras")
        assert set(entities) <= set(eras["entity"].astype(str)), set(eras["entity"])

    return check


def relevance_at(scope: str, level: str, target: str) -> Check:
    """The worked example: tested features at ``level``, the target's own ones left out."""

    def check(done: Done) -> None:
        selection = pd.read_parquet(done.folder / "eraflow-store" / "selection")
        rows = selection[
            (selection["scope"].astype(str) == scope) & (selection["level"].astype(str) == level)
        ]
        reasons = rows["reason"].astype(str)
        assert reasons.str.startswith("relevant (p=").any(), reasons.value_counts().head()
        assert reasons.str.startswith("not relevant").any()
        own = rows["feature"].astype(str).str.startswith(f"{target}__")
        assert (~rows.loc[own, "kept"]).all() and own.any()
        assert reasons[own].str.startswith("computed from the target").any()

    return check


def wrote(name: str, rows_at_least: int = 1) -> Check:
    def check(done: Done) -> None:
        path = done.folder / name
        key = ["entity", "level", "era_id", "start", "end"]
        frame = (
            pd.read_csv(path, index_col=list(range(len(key))))
            if path.suffix == ".csv"
            else pd.read_parquet(path)
        )
        assert len(frame) >= rows_at_least, f"{name}: {len(frame)} rows"
        # ready for a model: the era key and times in the index, numbers without gaps
        assert list(frame.index.names) == key, frame.index.names
        assert (frame.dtypes == "float64").all() and frame.notna().all().all()
        assert f"wrote {len(frame)} eras x {frame.shape[1]} features" in done.out

    return check


def quiet(done: Done) -> None:
    """Nothing alarming on stderr (a block save once printed an ERROR and two tracebacks)."""
    assert "ERROR" not in done.err and "Traceback" not in done.err, done.err


def both(*checks: Check) -> Check:
    def check(done: Done) -> None:
        for one in checks:
            one(done)

    return check


def ok(done: Done) -> None:
    """Exit status 0 is checked for every command; nothing more to see here."""


CHECKS: list[tuple[str, Check]] = [
    (r"eraflow run --help", prints("--start", "--store", "--era-levels.level-c")),
    (
        r"eraflow run --source knudjepsen",
        both(
            prints("flow run Completed", "kj_no3, kj_no4", "selection kj_no3+kj_no4/C"),
            stores("kj_no3", "kj_no4"),
            relevance_at("kj_no3+kj_no4", "C", "pipe_temp_1_c"),
        ),
    ),
    (r"eraflow run --source aarslev", both(prints("flow run Completed"), stores("aarslev_celle5"))),
    (r"eraflow run --source my_mapping\.toml", both(prints("house_3"), stores("house_3"))),
    (
        r"eraflow backfill --start 2024-01-01 --end 2024-01-15 --chunk 7D +#",
        both(prints("backfill Completed", "in 2 chunk(s)", "selection sim_a+sim_b/C")),
    ),
    (r"eraflow show", prints("backfill Completed", "results:", "report:")),
    (
        r"eraflow matrix --scope sim_a\+sim_b --level C --out matrix-C\.parquet",
        wrote("matrix-C.parquet"),
    ),
    (r"eraflow matrix --scope kj_no3\+kj_no4 --level B --out matrix-B\.csv", wrote("matrix-B.csv")),
    (r"eraflow catalogue", prints("air_temp_c", "valid_min")),
    (r"^createdb ", ok),
    (r"^DSN=", ok),
    (r"eraflow load --mapping knudjepsen", prints("loaded", "into sensor_data")),
    (r"^export PREFECT_HOME=\$PWD/\.prefect-home PREFECT_SERVER", ok),
    (r"python - <<'EOF'\nfrom blocks\.postgres", quiet),
    (r"eraflow run --source postgres", prints("flow run Completed", "kj_no3, kj_no4")),
    (r"eraflow matrix --store-block", wrote("matrix-B.parquet")),
    (r"eraflow server up", prints("export PREFECT_API_URL=")),
    (r"^export PREFECT_API_URL=", ok),
    (r"eraflow server status", prints("server: running", "cpu-pool: running")),
    (
        r"eraflow backfill (.|\n)*--chunk-deployment feature-pipeline/manual",
        prints("backfill Completed", "in 2 chunk(s)"),
    ),
    (r"eraflow server down", prints("stopped:", "server")),
]


def rule(command: str) -> Check:
    matches = [check for pattern, check in CHECKS if re.search(pattern, command)]
    assert len(matches) == 1, f"README command with {len(matches)} checks here: {command!r}"
    return matches[0]


def test_every_readme_command_has_exactly_one_check() -> None:
    """Fast, and in test-fast: a new or changed README command needs its rule here."""
    blocks = eraflow_blocks()
    assert set(blocks) == {
        "quick-start-fresh-machine-python-3-11-and-make",
        "postgresql",
        "running-on-a-prefect-server-pools-and-workers",
    }
    for block in blocks.values():
        for command in commands(block.text):
            rule(command)
    assert "eraflow backfill" in blocks["quick-start-fresh-machine-python-3-11-and-make"].text


def test_the_quick_start_make_targets_exist() -> None:
    """``make demo``, ``make test`` and ``make test-fast``: the targets the README names."""
    first = readme_blocks()[0]
    targets = [c.split()[1] for c in commands(first.text) if c.startswith("make ")]
    assert targets == ["demo", "test", "test-fast"]
    for target in targets:
        done = subprocess.run(
            ["make", "-n", "-C", str(REPO), target], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
    assert (
        "eraflow run"
        in subprocess.run(
            ["make", "-n", "-C", str(REPO), "demo"], capture_output=True, text=True, check=True
        ).stdout
    )


# ---- running a block ---------------------------------------------------------------------------
@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A fresh folder laid out like the checkout: .venv and ../shared beside it."""
    if not VENV.is_dir():
        pytest.skip("no .venv: run `make venv` first (the README's commands use it)")
    folder = tmp_path / "checkout"
    folder.mkdir()
    (folder / ".venv").symlink_to(VENV)
    (tmp_path / "shared").symlink_to(GREENHOUSE.parents[1])
    return folder


def environment() -> dict[str, str]:
    """A user's shell: no Prefect settings of this test session, the Makefile's hygiene."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ERAFLOW_"))}
    return env | {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def run_block(text: str, folder: Path, substitutions: dict[str, str]) -> list[Done]:
    """Run the block's commands in one bash, in order, stopping after the first failure."""
    script = ["set -u"]
    listed = commands(text)
    for n, command in enumerate(listed):
        shown = command
        for pattern, value in substitutions.items():
            shown = re.sub(pattern, value, shown)
        script += [
            "{ " + shown,
            f"}} > .readme-{n}.out 2> .readme-{n}.err; echo $? > .readme-{n}.rc",
            f'[ "$(cat .readme-{n}.rc)" = 0 ] || exit 0',
        ]
    subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=folder,
        env=environment(),
        timeout=1500,
        check=True,
    )
    done = []
    for n, command in enumerate(listed):
        rc_file = folder / f".readme-{n}.rc"
        if not rc_file.exists():
            break
        done.append(
            Done(
                command,
                int(rc_file.read_text()),
                (folder / f".readme-{n}.out").read_text(),
                (folder / f".readme-{n}.err").read_text(),
                folder,
            )
        )
    return done


def check_all(text: str, done: list[Done]) -> None:
    for result in done:
        assert result.rc == 0, (
            f"README command failed (exit {result.rc}): {result.command}\n{result.err[-3000:]}"
        )
        assert "Traceback" not in result.err, f"{result.command}:\n{result.err[-3000:]}"
        rule(result.command)(result)
    assert len(done) == len(commands(text)), "the block stopped early"


@pytest.mark.slow
@pytest.mark.realdata
def test_the_quick_start_commands_run_as_written(checkout: Path) -> None:
    """The command block, then the Python snippet that reads the matrix, in one fresh folder."""
    toml = next(b for b in readme_blocks() if b.text.startswith("# my_mapping.toml"))
    (checkout / "my_mapping.toml").write_text(toml.text, encoding="utf-8")
    block = eraflow_blocks()["quick-start-fresh-machine-python-3-11-and-make"]
    check_all(block.text, run_block(block.text, checkout, {}))
    snippet = next(b for b in readme_blocks() if b.language == "python")
    done = subprocess.run(
        [str(checkout / ".venv" / "bin" / "python"), "-c", snippet.text + "\nprint(matrix.shape)"],
        cwd=checkout,
        env=environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = int(done.stdout.strip().strip("()").split(",")[0])
    assert rows == len(pd.read_parquet(checkout / "matrix-C.parquet"))


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database name for the README's ``greenhouse``; dropped afterwards."""
    name = f"eraflow_readme_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.realdata
def test_the_postgresql_commands_run_as_written(checkout: Path, database: str) -> None:
    if shutil.which("createdb") is None:
        pytest.skip("createdb (PostgreSQL's client programs) is not installed")
    block = eraflow_blocks()["postgresql"]
    substitutions = {
        r"(createdb .*) greenhouse$": rf"\1 {database}",
        r"5432/greenhouse": f"5432/{database}",
        r'database="greenhouse"': f'database="{database}"',
    }
    check_all(block.text, run_block(block.text, checkout, substitutions))


@pytest.mark.slow
@pytest.mark.server
def test_the_server_commands_run_as_written(checkout: Path) -> None:
    block = eraflow_blocks()["running-on-a-prefect-server-pools-and-workers"]
    port = str(free_port())
    try:
        done = run_block(block.text, checkout, {r"\b4300\b": port})
    finally:  # never leave a server or a worker behind, whatever failed
        subprocess.run(
            [str(VENV / "bin" / "eraflow"), "server", "down", "--home", ".prefect-home"],
            cwd=checkout,
            env=environment(),
            capture_output=True,
            check=False,
        )
    check_all(block.text, done)
    summary = pd.read_json(
        checkout / "eraflow-store" / "reports" / "runs" / "latest.json", typ="series"
    )
    assert summary["kind"] == "backfill" and len(summary["chunk_runs"]) == 2
