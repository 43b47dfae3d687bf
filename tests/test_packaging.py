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


def test_every_deployment_form_is_described_and_its_parameters_exist() -> None:
    """Each deployment's run form (the flow's parameter schema): every field has a description;
    choices are listed; the parameters prefect.yaml sets are fields of the form."""
    import importlib

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    for deployment in spec["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        schema = getattr(module, name).parameters.model_dump()
        fields = schema["properties"]
        undescribed = [k for k, v in fields.items() if not v.get("description", "").strip()]
        assert not undescribed, f"{deployment['entrypoint']}: {undescribed}"
        assert set(deployment.get("parameters", {})) <= set(fields), deployment["name"]
    pipeline = importlib.import_module("flows.pipeline").feature_pipeline.parameters.model_dump()
    assert pipeline["properties"]["era_method"]["enum"] == ["pelt", "bocpd"]  # choices listed
    assert pipeline["properties"]["freq"]["default"] == "5min"


def test_every_default_is_declared_once() -> None:
    """The command's options, the flows' parameters and prefect.yaml agree: the flows' form
    shows the settings tree's defaults, and prefect.yaml sets only what differs from them."""
    import importlib
    import json

    from pydantic import BaseModel

    from eraflow.config import BackfillSettings, PipelineParameters

    def defaults(model: type[BaseModel]) -> dict[str, object]:
        out = {}
        for name, field in model.model_fields.items():
            value = field.get_default(call_default_factory=True)
            value = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
            out[name] = json.loads(json.dumps(value, default=str))
        return out

    def form(entrypoint: str) -> dict[str, object]:
        path, name = entrypoint.split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        schema = getattr(module, name).parameters.model_dump()["properties"]
        return {k: v.get("default") for k, v in schema.items() if "default" in v}

    pipeline, backfill = (
        form("flows/pipeline.py:feature_pipeline"),
        form("flows/backfill.py:backfill"),
    )
    assert pipeline == defaults(PipelineParameters)
    assert {k: backfill[k] for k in BackfillSettings.model_fields} == defaults(BackfillSettings)
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    for deployment in spec["deployments"]:
        shown = form(deployment["entrypoint"])
        restated = {
            k: v for k, v in deployment.get("parameters", {}).items() if shown.get(k, object()) == v
        }
        assert not restated, f"{deployment['name']} restates defaults: {restated}"
