"""The sensor catalogue: packaged defaults, user overrides, validation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from eraflow.catalogue import load_catalogue
from eraflow.errors import ConfigError


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
