"""settings.py: layers, validation that reports every problem with its source, docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults(tmp_path):
    config = settings.load(home=tmp_path, environ={})
    assert config.host == "127.0.0.1"
    assert config.port == 8080
    assert config.mdns is True
    assert config.source("port") == "default"


def test_layers_file_then_env_then_flags(tmp_path):
    (tmp_path / "shuqiao.toml").write_text('port = 9000\nthreads = 6\ndisplay_name = "城关小学"\n',
                                           encoding="utf-8")
    env = {"SHUQIAO_THREADS": "12", "SHUQIAO_MDNS": "off"}
    config = settings.load(home=tmp_path, overrides={"threads": 3, "host": None}, environ=env)
    assert config.port == 9000 and config.sources["port"].endswith("shuqiao.toml")
    assert config.display_name == "城关小学"
    assert config.threads == 3 and config.sources["threads"] == "--threads"
    assert config.mdns is False and config.sources["mdns"] == "env SHUQIAO_MDNS"
    assert config.host == "127.0.0.1"  # a None flag means "not given"


def test_home_from_env(tmp_path):
    config = settings.load(environ={"SHUQIAO_HOME": str(tmp_path / "h")})
    assert config.home == (tmp_path / "h").resolve()


def test_every_bad_value_is_reported_at_once_with_its_source(tmp_path):
    (tmp_path / "shuqiao.toml").write_text('port = "eighty"\ncolour = "red"\n')
    env = {"SHUQIAO_THREADS": "0", "SHUQIAO_MDNS": "maybe", "SHUQIAO_LANGUAGE": "fr"}
    with pytest.raises(settings.SettingsError) as info:
        settings.load(home=tmp_path, overrides={"connection_limit": 10}, environ=env)
    problems = info.value.problems
    text = "\n".join(problems)
    assert len(problems) == 6, text
    assert re.search(r"shuqiao.toml: port = 'eighty' is not valid", text)
    assert "unknown setting 'colour'" in text
    assert "env SHUQIAO_THREADS: threads = " in text and "below the minimum 1" in text
    assert "env SHUQIAO_MDNS" in text
    assert "env SHUQIAO_LANGUAGE" in text and "zh-CN, en" in text
    assert "--connection-limit: connection_limit = " in text


def test_unreadable_toml_is_reported(tmp_path):
    (tmp_path / "shuqiao.toml").write_text("port = = 3")
    with pytest.raises(settings.SettingsError, match="cannot be read as TOML"):
        settings.load(home=tmp_path, environ={})


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [s.name for s in settings.SETTINGS
               if f"`{s.name}`" not in readme or f"`{s.env_var}`" not in readme]
    assert not missing, f"settings missing from README's table: {missing}"
    assert "`SHUQIAO_HOME`" in readme


def test_every_setting_has_help_and_a_valid_default():
    for setting in settings.SETTINGS:
        assert len(setting.help) > 20, setting.name
        assert setting.parse(setting.default) == setting.default
