"""Cache keys for era batches: skip a batch whose inputs and code have not changed.

The key covers the batch's bounds and era ids, a content fingerprint of its grid, the
settings that shape its features, the code version, and the store. A cache hit skips the
write, so the caller refreshes the cache of any batch whose rows the store no longer holds
(:func:`stored`), e.g. after the store was wiped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from prefect.context import TaskRunContext

from eraflow.batches import EraBatch
from eraflow.config import PipelineConfig
from tasks.store import store_session


def stored(config: PipelineConfig, batch: EraBatch, engines: list[str]) -> bool:
    """Whether the store holds this batch's rows of these engines (else: recompute)."""
    with store_session(config) as store:
        return store.has_rows("features", entity=batch.entity, where={
            "level": batch.level, "engine": engines,
            "era_id": (batch.first_era_id, batch.last_era_id + 1)})


def batch_cache_key(stage: str, version: str,
                    settings: Callable[[PipelineConfig], dict[str, object]],
                    ) -> Callable[[TaskRunContext, dict[str, Any]], str | None]:
    """A Prefect ``cache_key_fn`` for one era-batch stage."""

    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        batch: EraBatch = parameters["batch"]
        config: PipelineConfig = parameters["config"]
        if not batch.fingerprint:
            return None
        with store_session(config) as store:
            where = store.describe()
        payload = {"stage": stage, "version": version, "batch": batch.model_dump(mode="json"),
                   "settings": settings(config), "store": where}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
        return f"{stage}-{digest.hexdigest()[:24]}"

    return key
