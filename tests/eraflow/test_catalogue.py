"""The sensor catalogue: packaged defaults, user overrides, validation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from eraflow.catalogue import load_catalogue
from eraflow.common.errors import ConfigError


def test_packaged_catalogue() -> None:
    cat = load_catalogue()
    air = cat.get("air_temp_c")
    assert (air.kind, air.resample_method, air.fill_method) == ("continuous", "mean", "linear")
    lamp = cat.get("lamp_status")
    assert (lamp.resample_method, lamp.fill_method) == ("max", "ffill")
    assert cat.get("energy_price_eur_mwh").fill_method == "ffill"
    assert air.max_fill_gap == timedelta(minutes=30)
    assert "air_temp_c" in cat.key_sensors()
    assert set(cat.to_frame()["kind"]) <= {
        "continuous",
        "binary",
        "categorical",
        "counter",
        "price",
    }


def test_unknown_sensor_gets_a_conservative_default() -> None:
    spec = load_catalogue().get("leaf_wetness")
    assert spec.name == "leaf_wetness" and spec.valid_min is None
    assert load_catalogue().unknown(["leaf_wetness", "co2_ppm"]) == ["leaf_wetness"]


def test_user_file_overrides_fields_and_adds_sensors(tmp_path: Path) -> None:
    user = tmp_path / "site.toml"
    user.write_text(
        '[co2_ppm]\nvalid_max = 2000.0\n\n[leaf_wetness]\nkind = "continuous"\n'
        'valid_min = 0\nvalid_max = 1\nmax_fill_gap = "10min"\n',
        encoding="utf-8",
    )
    cat = load_catalogue(user)
    co2 = cat.get("co2_ppm")
    assert co2.valid_max == 2000.0 and co2.valid_min == 150.0  # only the named field changed
    assert cat.get("leaf_wetness").max_fill_gap == timedelta(minutes=10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[x]\nkind = "wobbly"\n', r"sensor \[x\] is invalid: kind"),
        ('[x]\nmax_fill_gap = "soon"\n', "not a duration"),
        ("[x]\nvalid_min = 5\nvalid_max = 1\n", "valid_min 5.0 > valid_max 1.0"),
        ("[x]\ncolour = 1\n", "colour"),
        ("x = 1\n", r"entry \[x\] must be a table"),
        ("[x\n", "not valid TOML"),
    ],
)
def test_bad_user_files(tmp_path: Path, text: str, message: str) -> None:
    user = tmp_path / "bad.toml"
    user.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_catalogue(user)


def test_missing_user_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_catalogue(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("valid_min = nan", "valid_min = nan is not a finite number"),
        ("valid_max = inf", "valid_max = inf is not a finite number"),
        ("valid_min = -inf", "valid_min = -inf is not a finite number"),
        ("valid_min = 60.0", "valid_min 60.0 = valid_max 60.0: the valid range would be one value"),
        ("valid_min = 70.0", "valid_min 70.0 > valid_max 60.0: the valid range would be empty"),
        ('spike_window = "0h"', "spike_window = '0h' must be a positive duration"),
        ('max_fill_gap = "-5min"', "max_fill_gap = '-5min' must be a positive duration"),
        (
            'max_fill_gap = "0s"',
            "max_fill_gap = '0s' must be a positive duration like '30min' (for no filling, "
            'set fill = "none")',
        ),
        ("spike_sigmas = 0", "spike_sigmas = 0.0 must be a positive, finite number"),
        ("spike_sigmas = inf", "spike_sigmas = inf must be a positive, finite number"),
        ("spike_min_delta = nan", "spike_min_delta = nan must be a finite number >= 0"),
        ("spike_min_delta = -1", "spike_min_delta = -1.0 must be a finite number >= 0"),
    ],
)
def test_a_value_that_would_switch_a_check_off_silently_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    # air_temp_c is packaged with valid_max 60, so one overriding key is judged with it.
    user = tmp_path / "site.toml"
    user.write_text(f"[air_temp_c]\n{text}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_catalogue(user)
    assert str(caught.value).startswith(f"{user}: sensor [air_temp_c] is invalid: {message}")


def test_bounds_and_durations_at_their_edges_are_kept(tmp_path: Path) -> None:
    user = tmp_path / "site.toml"
    user.write_text(
        '[leaf_wetness]\nvalid_min = -0.5\nvalid_max = -0.25\nmax_fill_gap = "1s"\n'
        'spike_window = "1min"\nspike_sigmas = 0.5\nspike_min_delta = 0\n',
        encoding="utf-8",
    )
    spec = load_catalogue(user).get("leaf_wetness")
    assert (spec.valid_min, spec.valid_max) == (-0.5, -0.25)
    assert (spec.max_fill_gap, spec.spike_window) == (timedelta(seconds=1), timedelta(minutes=1))
    assert (spec.spike_sigmas, spec.spike_min_delta) == (0.5, 0.0)
