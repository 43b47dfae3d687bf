"""The Prefect UI, in a real headless Chromium: a run's artifacts render, the run form explains.

A real server, the deployments, and a pipeline run against it; then Debian's Chromium (the
test installs it when absent) renders the pages as a user's browser would: the era plot and
the plan artifacts of the run, and the deployment's Custom run form with the description of
every parameter. Screenshots are kept in ``test-output/browser/``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.prefect_server import PREFECT, prefect_server, run

pytestmark = [pytest.mark.server, pytest.mark.slow]
SHOTS = REPO / "test-output" / "browser"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1400,2200",
    "--virtual-time-budget=25000",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium, installed with apt when this machine has none."""
    found = shutil.which("chromium")
    if found is None:
        done = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, check=False)
            done = subprocess.run(
                ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
        found = shutil.which("chromium")
        assert found, f"could not install Debian's chromium: {done.stderr[-2000:]}"
    return found


@pytest.fixture(scope="module")
def server_with_a_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """A server with the deployments and one finished pipeline run; yields (env, ids)."""
    root = tmp_path_factory.mktemp("ui")
    (root / "home").mkdir()
    with prefect_server(root / "home") as env:
        run(["bash", "deployments/create_pools.sh"], env | {"PREFECT": PREFECT})
        run([PREFECT, "--no-prompt", "deploy", "--all"], env)
        store = root / "store"
        run(
            [
                sys.executable,
                "-m",
                "flows.cli",
                "run",
                "--store",
                str(store),
                "--simulator.days",
                "3",
                "--empty-tsfresh-levels",
                "--selection-levels",
                "A",
            ],
            env,
        )
        run_id = json.loads((store / "reports" / "runs" / "latest.json").read_text())["run_id"]
        yield env, {"run": run_id, **_ids(env, run_id)}


def _ids(env: dict[str, str], run_id: str) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
        keys = {a.key: str(a.id) for a in artifacts if a.key}
        manual = client.read_deployment_by_name("feature-pipeline/manual")
    return {"plot": keys["eras-sim-a"], "plan": keys["era-plan"], "deployment": str(manual.id)}


def render(chromium: str, url: str, name: str, tmp: Path) -> str:
    """The page's DOM after its scripts ran; a screenshot of it in test-output/browser."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    profile = ["--user-data-dir=" + str(tmp / f"profile-{name}")]
    subprocess.run(
        [chromium, *FLAGS, *profile, f"--screenshot={SHOTS / name}.png", url],
        capture_output=True,
        timeout=180,
        check=False,
    )
    dom = subprocess.run(
        [chromium, *FLAGS, *profile, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    (SHOTS / f"{name}.html").write_text(dom.stdout, encoding="utf-8")
    return dom.stdout


def test_the_era_plot_and_the_plan_render(
    chromium: str, server_with_a_run: tuple[dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    env, ids = server_with_a_run
    ui = env["PREFECT_API_URL"].removesuffix("/api")
    plot = render(chromium, f"{ui}/artifacts/artifact/{ids['plot']}", "era-plot", tmp_path)
    assert "Eras of sim_a" in plot and "data:image/png;base64," in plot
    plan = render(chromium, f"{ui}/artifacts/artifact/{ids['plan']}", "plan", tmp_path)
    assert "reason" in plan and "cpu" in plan
    assert (SHOTS / "era-plot.png").stat().st_size > 20_000


def test_the_custom_run_form_shows_every_description(
    chromium: str, server_with_a_run: tuple[dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    env, ids = server_with_a_run
    ui = env["PREFECT_API_URL"].removesuffix("/api")
    form = render(
        chromium,
        f"{ui}/deployments/deployment/{ids['deployment']}/run",
        "custom-run-form",
        tmp_path,
    )
    from eraflow.config import PipelineParameters

    for name in ("source", "freq", "start", "era_method", "selection_scope"):
        description = PipelineParameters.model_fields[name].description or ""
        assert description[:40] in form, f"no description of {name} in the run form"
