"""Project files that have no other test: the GPU image's Dockerfile and prefect.yaml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO


def test_dockerfile_gpu_lints_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (it comes with the dev extra)")
    done = subprocess.run(
        [hadolint, str(REPO / "Dockerfile.gpu")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_prefect_yaml_declares_the_deployments_on_their_pools() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    found = {(d["entrypoint"].split(":")[1], d["name"]): d for d in spec["deployments"]}
    assert set(found) == {
        ("feature_pipeline", "daily"),
        ("feature_pipeline", "manual"),
        ("backfill", "manual"),
        ("era_features_flow", "gpu"),
        ("era_features_flow", "cpu"),
    }
    assert found[("era_features_flow", "gpu")]["work_pool"]["name"] == "gpu-pool"
    assert found[("era_features_flow", "cpu")]["work_pool"]["name"] == "cpu-pool"
    daily = found[("feature_pipeline", "daily")]
    assert daily["schedules"][0]["active"] is False  # paused until someone resumes it
    assert daily["parameters"]["previous_day"] is True
    for deployment in spec["deployments"]:
        env = deployment["work_pool"]["job_variables"]["env"]
        assert env["OPENBLAS_NUM_THREADS"] == "1"
