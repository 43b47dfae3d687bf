"""Era features in the store: the settings hash of each stage, and verified writes.

Feature rows are written together with one ledger row per era and stage, carrying the data
fingerprint and the settings hash they were computed from (see ``feature_ledger`` in
:mod:`eraflow.store.tables`). A write keeps only the eras whose stored fingerprint still equals
the one computed on: when another run re-segmented the entity meanwhile, its results are not
overwritten by stale ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from eraflow.catalogue import load_catalogue
from eraflow.config import FeatureOptions
from eraflow.stages.batches import config_hash
from eraflow.stages.greenhouse import definition_digest
from eraflow.store.base import Key, ResultStore
from eraflow.store.tables import stage_engines

ENGINE_VERSION = "features-4"  # exact means; native rates; measured_values
TSFRESH_VERSION = "tsfresh-0.21.2-2"


def _catalogue_digest(catalogue: Path | None) -> str:
    """A user catalogue counts by its content (it sets each sensor's profile)."""
    if catalogue is None:
        return ""
    return hashlib.sha256(catalogue.read_bytes()).hexdigest()


def engine_config_hash(features: FeatureOptions, freq: str, catalogue: Path | None) -> str:
    """The settings hash of the engine stage: profile, catalogue, grid step, engine version.

    The stage writes the greenhouse family too: its definition (version, the effective
    constants, the packaged ones included, and its feature names) is part of the hash.
    """
    return config_hash(
        {
            "profile": features.profile,
            "values": features.values,
            "freq": freq,
            "catalogue": _catalogue_digest(catalogue),
            "greenhouse": definition_digest(load_catalogue(catalogue).greenhouse),
        },
        [ENGINE_VERSION],
    )


def tsfresh_config_hash(features: FeatureOptions, freq: str, catalogue: Path | None) -> str:
    """The settings hash of the tsfresh stage."""
    return config_hash(
        {
            "profile": features.tsfresh_profile,
            "engine_profile": features.profile,
            "values": features.values,
            "freq": freq,
            "catalogue": _catalogue_digest(catalogue),
        },
        [TSFRESH_VERSION],
    )


def stage_hashes(
    features: FeatureOptions, freq: str, catalogue: Path | None
) -> dict[str, dict[str, str]]:
    """``{stage: {level: config_hash}}`` of the stages these settings keep up to date."""
    engine = engine_config_hash(features, freq, catalogue)
    stages = {"engine": dict.fromkeys(("A", "B", "C"), engine)}
    if features.tsfresh_levels:
        tsfresh = tsfresh_config_hash(features, freq, catalogue)
        stages["tsfresh"] = dict.fromkeys(features.tsfresh_levels, tsfresh)
    return stages


@dataclass(frozen=True)
class WrittenFeatures:
    """What a verified write stored: values and eras, and eras skipped as stale."""

    values: int
    eras: int
    skipped: tuple[int, ...]


def write_era_features(
    store: ResultStore,
    features: pd.DataFrame,
    *,
    entity: str,
    level: str,
    stage: str,
    fingerprints: Mapping[int, str],
    config_hash: str,
    run_id: str,
) -> WrittenFeatures:
    """Replace the features and ledger rows of the eras in ``fingerprints`` (era_id → hash).

    Under the entity's lock, only eras whose stored fingerprint is still the one computed on
    are written; features go first, then the ledger, so a crash in between leaves features
    without a ledger row (recomputed next time), never a ledger row without features.
    """
    ids = sorted(int(i) for i in fingerprints)
    with store.lock(entity):
        current = store.read(
            "eras", Key(entity, {"level": level, "era_id": ids}), columns=["era_id", "fingerprint"]
        )
        now = dict(zip(current["era_id"].astype(int), current["fingerprint"], strict=True))
        fresh = [i for i in ids if now.get(i) == fingerprints[i]]
        skipped = tuple(i for i in ids if i not in fresh)
        rows = features[features["era_id"].isin(fresh)].assign(
            run_id=run_id, config_hash=config_hash
        )
        if fresh:
            store.replace(
                "features",
                rows,
                Key(entity, {"level": level, "era_id": fresh, "engine": stage_engines(stage)}),
            )
            counts = rows.groupby("era_id").size().reindex(fresh, fill_value=0)
            ledger = pd.DataFrame(
                {
                    "entity": entity,
                    "level": level,
                    "era_id": fresh,
                    "stage": stage,
                    "fingerprint": [fingerprints[i] for i in fresh],
                    "config_hash": config_hash,
                    "values": counts.to_numpy(dtype="int64"),
                    "run_id": run_id,
                    "written_at": pd.Timestamp.now(tz="UTC"),
                }
            )
            store.replace(
                "feature_ledger",
                ledger,
                Key(entity, {"level": level, "era_id": fresh, "stage": stage}),
            )
    return WrittenFeatures(values=len(rows), eras=len(fresh), skipped=skipped)
