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

from eraflow.batches import EraBatch, era_id_window
from eraflow.config import PipelineConfig
from tasks.store import store_session


def stored(config: PipelineConfig, batch: EraBatch, engines: list[str],
           settings_hash: str) -> bool:
    """Whether the store holds this batch's rows from these engines and these settings.

    Rows from other settings (an earlier profile, say) do not count: a cache hit would then
    leave them in place, so the batch must run and replace them.
    """
    with store_session(config) as store:
        return store.has_rows("features", entity=batch.entity, where={
            "level": batch.level, "engine": engines, "era_id": era_id_window(batch),
            "config_hash": settings_hash})


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
