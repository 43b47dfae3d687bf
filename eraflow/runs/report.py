"""The run report: one HTML file (and a JSON summary) next to the results, for people.

Data quality per sensor, eras per level with their coverage and plots, feature counts per
engine and sensor, what selection kept and dropped and why, the time of every stage, and for
a grower the daily light integral and degree days of each whole day of the run's range.
Built from what the run measured and what the store holds; Prefect-free.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc

from eraflow.catalogue import Catalogue
from eraflow.runs.summary import RunSummary, save_summary
from eraflow.stages.eras.plot import save_figure
from eraflow.stages.greenhouse import daily_values
from eraflow.store.base import Key, Range, ResultStore
from eraflow.store.grid import read_entity_grid

DAILY_LIGHT = "par_umol_m2_s__daily_light_integral"
DAILY_DEGREE_DAYS = "temp_above_base_c__daily_degree_days"
_DAILY_INPUTS = ("light_umol", "radiation_w_m2", "air_temp_c")


def reason_kind(reason: str) -> str:
    """The rule behind a selection reason: 'correlated with x (r=..)' -> 'correlated'."""
    if not reason:
        return "kept"
    if reason.startswith("too few eras"):
        return "kept: too few eras"
    return (
        re.split(r"[ (]", reason, maxsplit=1)[0]
        if not reason.startswith(("all NaN", "too many NaN", "not relevant"))
        else " ".join(reason.split()[:2])
    )


def coverage_by_sensor(
    store: ResultStore, entities: Sequence[str], start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Measured, filled and missing shares per (entity, sensor) over the run's whole days."""
    parts = [
        store.read("coverage", Key(e, {"day": Range(start.floor("D"), end)})) for e in entities
    ]
    frame = (
        pd.concat([p for p in parts if len(p)], ignore_index=True)
        if any(len(p) for p in parts)
        else pd.DataFrame(columns=["entity", "sensor", "rows"])
    )
    if frame.empty:
        return frame
    frame = frame.astype({"entity": str, "sensor": str})
    totals = frame.groupby(["entity", "sensor"], as_index=False)[
        ["rows", "measured", "filled", "missing"]
    ].sum()
    for part in ("measured", "filled", "missing"):
        totals[f"{part}_share"] = totals[part] / totals["rows"].clip(lower=1)
    longest = (
        frame.groupby(["entity", "sensor"])["longest_gap_rows"].max().rename("longest_gap_rows")
    )
    return totals.merge(longest.reset_index(), on=["entity", "sensor"])


def grid_rows_stored(
    store: ResultStore, entities: Sequence[str], start: pd.Timestamp, end: pd.Timestamp
) -> int:
    """Grid rows (times) the store holds for ``entities`` over the UTC days of [start, end).

    Read from the daily coverage (a row per sensor and day), not the grid itself: what a
    backfill reports after chunks it did not run itself (on a deployment, say).
    """
    total = 0
    for entity in entities:
        days = store.read(
            "coverage", Key(entity, {"day": Range(start.floor("D"), end)}), columns=["day", "rows"]
        )
        if len(days):
            total += int(days.groupby("day", observed=True)["rows"].max().sum())
    return total


def feature_counts(store: ResultStore, entities: Sequence[str]) -> pd.DataFrame:
    """Stored feature values per (entity, engine, sensor), counted on arrow dictionaries."""
    rows = []
    for entity in entities:
        counts: dict[tuple[str, str], int] = {}
        for batch in store.read_batches("features", Key(entity), columns=["engine", "sensor"]):
            pairs = pc.value_counts(
                pc.binary_join_element_wise(
                    *(
                        c.cast(c.type.value_type) if hasattr(c.type, "value_type") else c
                        for c in (batch.column(0), batch.column(1))
                    ),
                    "\x1f",
                )
            )
            for item in pairs.to_pylist():
                engine, sensor = str(item["values"]).split("\x1f", 1)
                counts[(engine, sensor)] = counts.get((engine, sensor), 0) + int(item["counts"])
        rows += [(entity, e, s, n) for (e, s), n in sorted(counts.items())]
    return pd.DataFrame(rows, columns=["entity", "engine", "sensor", "values"])


def selection_counts(store: ResultStore, scope: str | None) -> pd.DataFrame:
    """Features kept and dropped per level of a scope, by the rule that decided."""
    if scope is None:
        return pd.DataFrame(columns=["level", "decision", "features"])
    selection = store.read("selection", Key(scope), columns=["level", "kept", "reason"])
    selection["decision"] = selection["reason"].astype(str).map(reason_kind)
    out = selection.groupby(["level", "decision"]).size().rename("features").reset_index()
    return out.sort_values(["level", "features"], ascending=[True, False])


def eras_by_level(store: ResultStore, entities: Sequence[str]) -> pd.DataFrame:
    """Era count, median length and mean coverage per (entity, level, kind)."""
    rows = []
    for entity in entities:
        eras = store.read(
            "eras", Key(entity), columns=["level", "start", "end", "coverage", "kind"]
        )
        for (level, kind), part in eras.groupby(["level", "kind"]):
            rows.append(
                (
                    entity,
                    level,
                    kind,
                    len(part),
                    str((part["end"] - part["start"]).median()),
                    float(part["coverage"].mean()),
                )
            )
    return pd.DataFrame(
        rows, columns=["entity", "level", "kind", "eras", "median_length", "mean_coverage"]
    )


def greenhouse_days(
    store: ResultStore,
    entities: Sequence[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    step: pd.Timedelta,
    catalogue: Catalogue,
) -> pd.DataFrame:
    """Daily light integral (mol m⁻² d⁻¹) and degree days (°C·d) per whole day and entity.

    Computed from the stored grid of the run's range (only the three input columns are read)
    with the catalogue's greenhouse constants, exactly as the greenhouse features per day.
    """
    parts = []
    for entity in entities:
        values, _ = read_entity_grid(
            store, entity, step=step, start=start, end=end, sensors=list(_DAILY_INPUTS)
        )
        if len(values) < 2:
            continue
        days = daily_values(
            values,
            catalogue.greenhouse,
            step=step,
            quantities=[DAILY_LIGHT, DAILY_DEGREE_DAYS],
        )
        if len(days.columns):
            parts.append(days.reset_index().assign(entity=entity))
    columns = ["entity", "day", DAILY_LIGHT, DAILY_DEGREE_DAYS]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True).reindex(columns=columns)


def greenhouse_summary(days: pd.DataFrame) -> pd.DataFrame:
    """Per entity: whole days, mean/min/max daily light integral, degree-day sum and mean."""
    if days.empty:
        return pd.DataFrame()
    grouped = days.groupby("entity", sort=True)
    light = grouped[DAILY_LIGHT]
    degree = grouped[DAILY_DEGREE_DAYS]
    return pd.DataFrame(
        {
            "whole days": grouped.size(),
            "DLI mean [mol/m²/d]": light.mean().round(2),
            "DLI min": light.min().round(2),
            "DLI max": light.max().round(2),
            "degree days sum [°C·d]": degree.sum(min_count=1).round(1),
            "degree days mean [°C·d/d]": degree.mean().round(2),
        }
    ).reset_index()


def plot_greenhouse_days(
    days: pd.DataFrame, path: Path, *, base_temp_c: float | None = None
) -> Path:
    """Two panels per day: daily light integral and degree days, one line per entity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (light_ax, degree_ax) = plt.subplots(2, 1, sharex=True, figsize=(14, 6))
    for entity, part in days.groupby("entity", sort=True):
        when = pd.DatetimeIndex(part["day"]).tz_localize(None)
        light_ax.plot(when, part[DAILY_LIGHT], marker=".", lw=0.8, label=str(entity))
        degree_ax.plot(when, part[DAILY_DEGREE_DAYS], marker=".", lw=0.8, label=str(entity))
    light_ax.set_ylabel("daily light integral\n[mol m⁻² d⁻¹]", fontsize=9)
    above = "" if base_temp_c is None else f" above {base_temp_c:g} °C"
    degree_ax.set_ylabel(f"degree days{above}\n[°C·d per day]", fontsize=9)
    degree_ax.set_xlabel("day", fontsize=9)
    for ax in (light_ax, degree_ax):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    light_ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("Greenhouse days: light and warmth per whole day", fontsize=10)
    return save_figure(fig, path, dpi=100)


def _table(frame: pd.DataFrame | None, percent: Sequence[str] = ()) -> str:
    if frame is None or frame.empty:
        return "<p><em>none</em></p>"
    shown = frame.copy()
    for column in percent:
        if column in shown:
            shown[column] = (100 * shown[column].astype(float)).round(1).astype(str) + " %"
    return shown.to_html(index=False, border=0, classes="t", escape=True)


def _image(path: Path, title: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table.t{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
table.t th{background:#f3f3f3} h2{border-bottom:2px solid #b2182b;padding-bottom:3px}
img{max-width:100%} figcaption{font-size:12px;color:#555} .kv td{padding:2px 12px}"""


def _summary_rows(summary: RunSummary) -> list[tuple[str, str]]:
    """The summary's scalar facts, in reading order."""
    rows = [
        ("kind", summary.kind),
        ("range (UTC)", f"{summary.start} .. {summary.end}"),
        ("entities", ", ".join(summary.entities)),
        ("grid rows", str(summary.grid_rows)),
    ]
    if summary.chunks is not None:
        rows.append(("chunks", str(summary.chunks)))
    rows += [
        ("eras with features computed", str(summary.computed_eras)),
        ("feature values computed", str(summary.feature_rows)),
        ("selection scope", summary.scope or "-"),
        ("store", summary.store),
    ]
    return rows


def render_html(
    summary: RunSummary,
    sections: Mapping[str, pd.DataFrame | None],
    pictures: Mapping[str, Path] | None = None,
) -> str:
    """The report page: summary, stage times, then one section per table and the plots.

    ``pictures`` adds a PNG under the section of the same key (the greenhouse days).
    """
    head = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
        for k, v in _summary_rows(summary)
    )
    stages = stage_table(summary)
    parts = [
        f"<h1>eraflow {summary.kind} {html.escape(summary.run_id)}</h1>",
        f"<table class='kv'>{head}</table>",
        "<h2>Time per stage</h2>",
        _table(stages),
    ]
    titles = {
        "quality": "Data quality per sensor (values read, dropped, coverage)",
        "eras": "Eras per level",
        "features": "Feature values per engine and sensor",
        "selection": "Selection: kept and dropped, by rule",
        "greenhouse": "Greenhouse days: daily light integral and degree days (whole days)",
    }
    percent = ["measured_share", "filled_share", "missing_share", "mean_coverage"]
    for key, frame in sections.items():
        parts += [f"<h2>{html.escape(titles.get(key, key))}</h2>", _table(frame, percent)]
        if key == "eras":
            parts += [
                _image(Path(p), f"Eras of {e}")
                for e, p in summary.plots.items()
                if Path(p).exists()
            ]
        picture = (pictures or {}).get(key)
        if picture is not None and Path(picture).exists():
            parts.append(_image(Path(picture), titles.get(key, key)))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>eraflow run "
        f"{html.escape(summary.run_id)}</title><style>{STYLE}</style></head><body>"
        + "".join(parts)
        + "</body></html>"
    )


def stage_table(summary: RunSummary) -> pd.DataFrame:
    """Seconds per stage, in the order the stages ran."""
    return pd.DataFrame(
        {
            "stage": list(summary.stages),
            "seconds": [round(v, 2) for v in summary.stages.values()],
        }
    )


def write_report(
    summary: RunSummary,
    sections: Mapping[str, pd.DataFrame | None],
    folder: Path,
    *,
    base_temp_c: float | None = None,
) -> Path:
    """Write ``<run_id>.html`` (and ``latest.html``) into ``folder``, and the summary's JSON.

    The summary saved is the one given, with ``report`` set to the HTML's path. A
    ``greenhouse`` section (the days of :func:`greenhouse_days`) is shown as a table per
    entity and a plot per day (``<folder>/<run_id>/greenhouse-days.png``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{summary.run_id}.html"
    summary.report = str(path.resolve())
    shown = dict(sections)
    pictures: dict[str, Path] = {}
    days = shown.get("greenhouse")
    if days is not None:
        shown["greenhouse"] = greenhouse_summary(days)
        plotted = days.dropna(subset=[DAILY_LIGHT, DAILY_DEGREE_DAYS], how="all")
        if len(plotted):
            pictures["greenhouse"] = plot_greenhouse_days(
                plotted,
                folder / summary.run_id / "greenhouse-days.png",
                base_temp_c=base_temp_c,
            )
    page = render_html(summary, shown, pictures)
    path.write_text(page, encoding="utf-8")
    (folder / "latest.html").write_text(page, encoding="utf-8")
    save_summary(summary, folder)
    return path
