"""Eras belong to an entity's history: segment it whole, keep what did not change.

After a run wrote its grid range, :func:`update_entity_eras` segments the entity over its
stored history (or from a level-A boundary at least ``horizon`` before the run), compares the
result with the stored eras, and:

- keeps every era whose bounds and data fingerprint are unchanged, with its features;
- deletes the features (and ledger rows) of eras that changed or no longer exist;
- stores the new eras, and returns the eras whose features must be computed: those the
  feature ledger does not hold with the era's fingerprint and the current settings.

So chunked backfills and one long run end with the same eras and features, the daily run
extends the last eras instead of cutting them at midnight, and whether an era is up to date
is decided by what the store holds, never by a cache entry. The whole step runs under the
store's per-entity lock, so two runs of one entity segment one after the other.

How far back a boundary can move: with ``horizon=None`` (default) any boundary may move when
data is added or replaced, since the optimal segmentation is global; in practice only eras
near the change move, and the others keep their features. With a horizon ``H``, eras that
start before the last stored level-A boundary at or before ``start - H`` are frozen (their
regime labels too: labels are fitted over the eras segmented, see
:mod:`eraflow.stages.eras.regimes`).

Penalties: under rule ``"elbow"`` each level's penalty is chosen afresh from the penalty path
of the whole history whenever it is re-segmented (:mod:`eraflow.stages.eras.penalty_path`), so
appending data can move it; with a horizon, the penalties stored by the last choice are kept
(a window of days is too short to choose by). The applied penalty of every level is stored per
entity (table ``era_penalties``). The path's segmentations run under the entity's lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eraflow.common.errors import DataError
from eraflow.stages.batches import assign_stable_era_ids
from eraflow.stages.eras import LEVELS, EraConfig
from eraflow.stages.eras.gaps import GAP_METHOD, detect_eras_with_gaps, measured
from eraflow.stages.eras.penalty_path import (
    PenaltyChoice,
    PenaltyRule,
    applied_penalty,
    choose_penalties,
    configured_penalties,
    path_levels,
    with_factors,
)
from eraflow.stages.eras.regimes import regime_labels
from eraflow.store.base import Key, Range, ResultStore
from eraflow.store.grid import read_entity_grid
from eraflow.store.tables import ERA_PENALTIES, ERAS

ERA_KEY = ["level", "era_id"]


@dataclass(frozen=True)
class EraUpdate:
    """The outcome of re-segmenting one entity.

    Attributes
    ----------
    eras
        Every stored era of the entity after the update (frozen and new), eras-table columns.
    todo
        ``(level, era_id, stage)`` rows: features to compute for this stage.
    values, fill_mask
        The grid segmented (for plots); empty frames when nothing was stored.
    kept, changed, removed
        Eras unchanged (bounds and data), changed (same start, other end or data), and gone.
    notes
        What era detection noted (signals skipped as all-missing or constant).
    window_start
        Eras starting at or after it were re-segmented (None: the whole history).
    penalties
        The penalties applied and, when drawn, the penalty path they were chosen from.
    """

    eras: pd.DataFrame
    todo: pd.DataFrame
    values: pd.DataFrame
    fill_mask: pd.DataFrame
    kept: int
    changed: int
    removed: int
    window_start: pd.Timestamp | None
    notes: list[str]
    penalties: PenaltyChoice | None = None


def era_fingerprints(
    values: pd.DataFrame, fill_mask: pd.DataFrame, eras: pd.DataFrame
) -> list[str]:
    """A content hash per era of its grid slice: times, every sensor's values and fill mask.

    Two eras with one fingerprint hold the same data; an era whose data or end changed gets
    another fingerprint, so its stored features are known to be stale.
    """
    names = ",".join(map(str, values.columns)).encode()
    both = pd.concat([values, fill_mask.add_prefix("\0")], axis=1)
    rows = pd.util.hash_pandas_object(both, index=True).to_numpy()
    times = values.index.as_unit("ns").asi8
    starts = np.searchsorted(times, _ns(eras["start"]), side="left")
    ends = np.searchsorted(times, _ns(eras["end"]), side="left")
    out = []
    for a, b in zip(starts, ends, strict=True):
        digest = hashlib.sha256(names)
        digest.update(rows[a:b].tobytes())
        out.append(digest.hexdigest()[:20])
    return out


def era_coverage(values: pd.DataFrame, fill_mask: pd.DataFrame, eras: pd.DataFrame) -> np.ndarray:
    """Share of measured values (not filled, not missing) of each era's detection signals."""
    times = values.index.as_unit("ns").asi8
    starts = np.searchsorted(times, _ns(eras["start"]), side="left")
    ends = np.searchsorted(times, _ns(eras["end"]), side="left")
    out = np.full(len(eras), np.nan)
    cumulative: dict[str, np.ndarray] = {}
    for i, (signals, a, b) in enumerate(zip(eras["signals"], starts, ends, strict=True)):
        names = [s for s in str(signals).split(",") if s in values.columns]
        if not names or b <= a:
            continue
        total = 0.0
        for name in names:
            if name not in cumulative:
                seen = measured(values, fill_mask, [name])[:, 0]
                cumulative[name] = np.concatenate([[0], np.cumsum(seen)])
            total += cumulative[name][b] - cumulative[name][a]
        out[i] = total / (len(names) * (b - a))
    return out


def _ns(column: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(pd.to_datetime(column, utc=True)).as_unit("ns").asi8


def _window_start(
    stored: pd.DataFrame, start: pd.Timestamp | None, horizon: pd.Timedelta | None
) -> pd.Timestamp | None:
    if horizon is None or start is None or stored.empty:
        return None
    level_a = stored[(stored["level"] == "A") & (stored["start"] <= start - horizon)]
    return None if level_a.empty else pd.Timestamp(level_a["start"].max())


def _compare(stored: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(changed, gone): stored eras with another end or fingerprint, and vanished ones."""
    merged = stored[[*ERA_KEY, "end", "fingerprint", "kind"]].merge(
        new[[*ERA_KEY, "end", "fingerprint", "kind"]],
        on=ERA_KEY,
        how="left",
        suffixes=("", "_new"),
        indicator=True,
    )
    gone = merged[merged["_merge"] == "left_only"][ERA_KEY]
    both = merged[merged["_merge"] == "both"]
    changed = both[
        (both["end"] != both["end_new"])
        | (both["fingerprint"] != both["fingerprint_new"])
        | (both["kind"] != both["kind_new"])
    ][ERA_KEY]
    return changed.reset_index(drop=True), gone.reset_index(drop=True)


def stale_eras(
    eras: pd.DataFrame, ledger: pd.DataFrame, stages: Mapping[str, Mapping[str, str]]
) -> pd.DataFrame:
    """``(level, era_id, stage)`` of eras whose stage features the ledger does not hold.

    ``stages`` maps a stage to ``{level: config_hash}`` (a level absent: the stage does not
    run there). Up to date means a ledger row with the era's fingerprint and that hash.
    Gap eras have no features: there is no data to describe.
    """
    eras = eras[eras["kind"] != GAP_METHOD]
    rows = []
    for stage, hashes in stages.items():
        want = eras[eras["level"].isin(list(hashes))][[*ERA_KEY, "fingerprint"]].copy()
        want["config_hash"] = want["level"].map(dict(hashes))
        have = ledger[ledger["stage"] == stage][[*ERA_KEY, "fingerprint", "config_hash"]]
        merged = want.merge(
            have, on=[*ERA_KEY, "fingerprint", "config_hash"], how="left", indicator=True
        )
        missing = merged[merged["_merge"] == "left_only"][ERA_KEY].assign(stage=stage)
        rows.append(missing)
    if not rows:
        return pd.DataFrame({"level": [], "era_id": [], "stage": []})
    out = pd.concat(rows, ignore_index=True)
    return out.astype({"era_id": "int64"}).sort_values([*ERA_KEY, "stage"]).reset_index(drop=True)


def drop_era_features(store: ResultStore, entity: str, eras: pd.DataFrame) -> None:
    """Delete the features and ledger rows of these ``(level, era_id)`` eras, ledger first.

    Ledger first: a crash in between leaves features without a ledger row, which the next run
    recomputes and replaces; never a ledger row vouching for deleted features.
    """
    for level, part in eras.groupby("level"):
        ids = sorted(int(i) for i in part["era_id"])
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            store.delete("feature_ledger", Key(entity, {"level": level, "era_id": chunk}))
            store.delete("features", Key(entity, {"level": level, "era_id": chunk}))


def penalty_rows(
    entity: str, choice: PenaltyChoice, eras: pd.DataFrame, rule: PenaltyRule
) -> pd.DataFrame:
    """The ``era_penalties`` rows of one segmentation: what each level was segmented with."""
    path = choice.path
    rows = []
    for level in LEVELS:
        scale, pen = applied_penalty(choice.config, level)
        elbows = path.loc[(path["level"] == level) & path["elbow"], "factor"]
        data = (eras["level"] == level) & (eras["kind"] != "gap")
        rows.append(
            {
                "entity": entity,
                "level": level,
                "rule": rule,
                "factor": choice.factors.get(level, np.nan),
                "penalty_scale": scale,
                "pen": pen,
                "eras": int(data.sum()),
                "elbow_factor": float(elbows.iloc[0]) if len(elbows) else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=ERA_PENALTIES.names)


def due_eras(
    store: ResultStore, entity: str, stages: Mapping[str, Mapping[str, str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The entity's stored eras, and ``(level, era_id, stage)`` of those the ledger lacks."""
    eras = store.read("eras", Key(entity))
    return eras, stale_eras(eras, store.read("feature_ledger", Key(entity)), stages)


def _penalties(
    store: ResultStore,
    entity: str,
    grid: tuple[pd.DataFrame, pd.DataFrame],
    config: EraConfig,
    rule: PenaltyRule,
    *,
    windowed: bool,
    draw_path: bool,
) -> PenaltyChoice:
    """The penalties to segment with: configured, kept from the last choice, or chosen now."""
    if rule == "set" and not draw_path:
        return configured_penalties(config)
    if rule == "elbow" and windowed:
        last = store.read("era_penalties", Key(entity))
        last = last[(last["rule"] == "elbow") & last["factor"].notna()]
        if set(last["level"]) >= set(path_levels(config)):
            factors = dict(zip(last["level"], last["factor"].astype(float), strict=True))
            return with_factors(config, {lv: factors[lv] for lv in path_levels(config)})
    values, fill_mask = grid
    return choose_penalties(
        # the path's own segmentations note the same skipped signals: not kept twice
        lambda settings: detect_eras_with_gaps(
            values, fill_mask, entity=entity, config=settings, notes=[]
        ),
        config,
        rule=rule,
    )


def update_entity_eras(
    store: ResultStore,
    entity: str,
    *,
    config: EraConfig,
    step: pd.Timedelta,
    stages: Mapping[str, Mapping[str, str]],
    start: pd.Timestamp | None = None,
    horizon: pd.Timedelta | None = None,
    penalty_rule: PenaltyRule = "set",
    draw_penalty_path: bool = False,
) -> EraUpdate:
    """Re-segment ``entity``'s stored history; store the eras; return what must be computed.

    Parameters
    ----------
    store
        The result store holding the entity's grid (written by this run first).
    entity
        The entity to segment.
    config
        Era detection settings.
    step
        The grid step.
    stages
        Feature stages to keep up to date: ``{stage: {level: config_hash}}``.
    start
        The run's start (with ``horizon``: where the re-segmented window begins).
    horizon
        None: segment the whole stored history. Else see the module docstring.
    penalty_rule
        ``"set"``: each level's configured penalty; ``"elbow"``: the elbow of its penalty path
        over the data segmented (:func:`eraflow.stages.eras.penalty_path.choose_penalties`).
    draw_penalty_path
        Draw the penalty path under rule ``"set"`` too (for the picture); about 21
        segmentations.
    """
    with store.lock(entity):
        stored = store.read("eras", Key(entity))
        window = _window_start(stored, start, horizon)
        values, fill_mask = read_entity_grid(store, entity, step=step, start=window)
        if values.empty:
            raise DataError(f"no stored grid for {entity}: nothing to segment")
        values = values[[c for c in values.columns if values[c].notna().any()]]
        fill_mask = fill_mask[values.columns]
        notes: list[str] = []
        choice = _penalties(
            store,
            entity,
            (values, fill_mask),
            config,
            penalty_rule,
            windowed=window is not None,
            draw_path=draw_penalty_path,
        )
        eras = assign_stable_era_ids(
            detect_eras_with_gaps(
                values, fill_mask, entity=entity, config=choice.config, notes=notes
            )
        )
        eras["fingerprint"] = era_fingerprints(values, fill_mask, eras)
        eras["coverage"] = era_coverage(values, fill_mask, eras)
        eras["regime"] = regime_labels(values, eras)
        eras = eras[ERAS.names]
        in_window = stored if window is None else stored[stored["start"] >= window]
        changed, gone = _compare(in_window, eras)
        drop_era_features(store, entity, pd.concat([changed, gone], ignore_index=True))
        key = Key(entity) if window is None else Key(entity, {"start": Range(window, None)})
        store.replace("eras", eras, key)
        frozen = stored.iloc[:0] if window is None else stored[stored["start"] < window]
        everything = (
            pd.concat([frozen[ERAS.names], eras], ignore_index=True) if len(frozen) else eras
        )
        store.replace(
            "era_penalties", penalty_rows(entity, choice, everything, penalty_rule), Key(entity)
        )
        ledger = store.read("feature_ledger", Key(entity))
        todo = stale_eras(everything, ledger, stages)
    return EraUpdate(
        notes=notes,
        eras=everything,
        todo=todo,
        values=values,
        fill_mask=fill_mask,
        kept=len(in_window) - len(changed) - len(gone),
        changed=len(changed),
        removed=len(gone),
        window_start=window,
        penalties=choice,
    )
