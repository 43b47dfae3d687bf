"""Bad files, mappings and catalogues, through the installed ``eraflow`` script, as a user runs it.

Each case ends with exit status 2 and exactly one line on stderr naming the file (and the line,
where there is one) and the fix, before any work: the store is byte for byte unchanged. The
first case is the operator's: a decimal comma in a ','-separated export (5 fields under a
4-field header) once ran to the end with the temperature cut to its integer part and CO2 and
humidity dropped as out of range.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.reliability.test_bad_input import snapshot

pytestmark = pytest.mark.slow  # 13 runs of the console script: 30-45 s in all

ERAFLOW = REPO / ".venv" / "bin" / "eraflow"

HEADER = "t,temp,co2,rh\n"
GOOD_ROWS = "2024-03-01 00:05:00,20.5,801,70.2\n2024-03-01 00:10:00,21.25,812,68.5\n"
COLUMNS = (
    'columns = [\n  { column = "temp", sensor = "air_temp_c" },\n'
    '  { column = "co2", sensor = "co2_ppm" },\n  { column = "rh", sensor = "rh_percent" },\n]\n'
)


def mapping_text(files: str = '["data.csv"]', column_extra: str = "") -> str:
    """A mapping of ``data.csv``'s three sensors; ``column_extra`` is added to the first column."""
    columns = COLUMNS.replace('sensor = "air_temp_c" }', f'sensor = "air_temp_c"{column_extra} }}')
    return (
        f'[[sources]]\nname = "house"\nfiles = {files}\nentity = "house"\n'
        f'time = {{ columns = ["t"] }}\n{columns}'
    )


@dataclass(frozen=True)
class Case:
    """One mistake: the files it writes and the words its one line must hold."""

    name: str
    data: str = HEADER + GOOD_ROWS
    mapping: str = mapping_text()
    catalogue: str | None = None
    link_outside: bool = False
    words: tuple[str, ...] = ()


CASES = [
    Case(
        "decimal comma in a ','-separated file",
        data=HEADER + "2024-03-01 00:00:00,20,07,790.9,69.1\n" + GOOD_ROWS,
        words=(
            "{data}/data.csv: line 2 has 5 fields, the header has 4 (1 such row)",
            'on_ragged = "skip"',
        ),
    ),
    Case(
        "a row cut short",
        data=HEADER + GOOD_ROWS + "2024-03-01 00:15:00,21.5\n",
        words=("{data}/data.csv: line 4 has 2 fields, the header has 4 (1 such row)",),
    ),
    Case(
        "a glob with '..'",
        mapping=mapping_text(files='["../../etc/*.csv"]'),
        words=("{tmp}/mapping.toml", "files", "'../../etc/*.csv' has a '..' component"),
    ),
    Case(
        "an absolute glob",
        mapping=mapping_text(files='["/etc/*.csv"]'),
        words=("{tmp}/mapping.toml", "files", "'/etc/*.csv' is absolute"),
    ),
    Case(
        "a symlink out of the data root",
        mapping=mapping_text(files='["*.csv"]'),
        link_outside=True,
        words=("{data}/link.csv", "resolves to {tmp}/outside/secret.csv", "outside the data root"),
    ),
    Case(
        "scale nan",
        mapping=mapping_text(column_extra=", scale = nan"),
        words=("{tmp}/mapping.toml", "columns.0.scale", "scale = nan is not a finite number"),
    ),
    Case(
        "scale 0",
        mapping=mapping_text(column_extra=", scale = 0.0"),
        words=("{tmp}/mapping.toml", "scale = 0.0 would make every value 0"),
    ),
    Case(
        "offset inf",
        mapping=mapping_text(column_extra=", offset = inf"),
        words=("{tmp}/mapping.toml", "offset = inf is not a finite number"),
    ),
    Case(
        "valid_min nan",
        catalogue="[air_temp_c]\nvalid_min = nan\n",
        words=("{tmp}/catalogue.toml", "[air_temp_c]", "valid_min = nan is not a finite number"),
    ),
    Case(
        "valid_max inf",
        catalogue="[co2_ppm]\nvalid_max = inf\n",
        words=("{tmp}/catalogue.toml", "[co2_ppm]", "valid_max = inf is not a finite number"),
    ),
    Case(
        "valid_min >= valid_max",
        catalogue="[rh_percent]\nvalid_min = 50.0\nvalid_max = 50.0\n",
        words=("{tmp}/catalogue.toml", "valid_min 50.0 = valid_max 50.0"),
    ),
    Case(
        "spike window 0h",
        catalogue='[air_temp_c]\nspike_window = "0h"\n',
        words=("{tmp}/catalogue.toml", "spike_window = '0h' must be a positive duration"),
    ),
    Case(
        "negative fill gap",
        catalogue='[co2_ppm]\nmax_fill_gap = "-10min"\n',
        words=("{tmp}/catalogue.toml", "max_fill_gap = '-10min' must be a positive duration"),
    ),
]


def _env(home: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ERAFLOW_"))}
    return clean | {"PREFECT_HOME": str(home), "MPLBACKEND": "Agg"}


def write_case(case: Case, tmp: Path) -> list[str]:
    """The case's files under ``tmp``; the arguments after ``eraflow``."""
    data = tmp / "data"
    data.mkdir()
    (data / "data.csv").write_text(case.data, encoding="utf-8")
    if case.link_outside:
        outside = tmp / "outside"
        outside.mkdir()
        (outside / "secret.csv").write_text(HEADER + GOOD_ROWS, encoding="utf-8")
        (data / "link.csv").symlink_to(outside / "secret.csv")
    (tmp / "mapping.toml").write_text(case.mapping, encoding="utf-8")
    args = ["run", "--source", str(tmp / "mapping.toml"), "--data-root", str(data)]
    if case.catalogue is not None:
        (tmp / "catalogue.toml").write_text(case.catalogue, encoding="utf-8")
        args += ["--catalogue", str(tmp / "catalogue.toml")]
    return [*args, "--store", str(tmp / "store")]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_file_ends_at_once_with_one_line_naming_it(case: Case, tmp_path: Path) -> None:
    tmp = tmp_path.resolve()  # the messages name resolved paths where they resolve links
    args = write_case(case, tmp)
    store = tmp / "store"
    store.mkdir()
    (store / "earlier-run.txt").write_text("what an earlier run left\n", encoding="utf-8")
    before = snapshot(store)
    started = time.perf_counter()
    done = subprocess.run(
        [str(ERAFLOW), *args],
        capture_output=True,
        text=True,
        env=_env(tmp / "prefect-home"),
        cwd=tmp,
        timeout=120,
        check=False,
    )
    seconds = time.perf_counter() - started
    err = done.stderr
    assert done.returncode == 2, f"exit {done.returncode}:\n{err[-3000:]}"
    assert len(err.splitlines()) == 1, err
    assert err.startswith("eraflow: "), err
    for word in case.words:
        expected = word.format(tmp=tmp, data=tmp / "data")
        assert expected in err, f"{expected!r} not in: {err}"
    assert snapshot(store) == before
    assert seconds < 60, f"{case.name}: {seconds:.1f} s, not 'at once'"
