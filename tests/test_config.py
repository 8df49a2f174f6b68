"""Config loading: precedence, strictness, and the example file staying complete."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from core.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def test_defaults_need_no_file() -> None:
    config = load_config(environ={})
    assert config.server.port == 8080
    assert config.store.url == "sqlite:///skillproxy.db"
    assert config.store.location.path == "skillproxy.db"
    assert config.upstream.openai_base_url == "https://api.openai.com/v1"


def test_precedence_file_then_environment_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 9001\nhost = "0.0.0.0"\n[store]\nurl = "a.db"\n')
    config = load_config(
        path,
        environ={"SKILLPROXY_SERVER__PORT": "9002", "SKILLPROXY_STORE__URL": "b.db"},
        overrides={"store": {"url": "c.db"}, "server": {"host": None}},
    )
    assert config.server.port == 9002
    assert config.server.host == "0.0.0.0"
    assert config.store.url == "c.db"


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'server\.prot'"):
        load_config(path, environ={})


def test_unknown_section_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[sever]\nport = 1\n")
    with pytest.raises(ConfigError, match="'sever'"):
        load_config(path, environ={})


def test_malformed_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"invalid setting 'server\.port'.*'eighty'"):
        load_config(environ={"SKILLPROXY_SERVER__PORT": "eighty"})
    with pytest.raises(ConfigError, match=r"traces\.on_full"):
        load_config(environ={"SKILLPROXY_TRACES__ON_FULL": "explode"})


def test_unknown_environment_variable_is_named() -> None:
    with pytest.raises(ConfigError, match="SKILLPROXY_SERVERPORT"):
        load_config(environ={"SKILLPROXY_SERVERPORT": "1"})
    with pytest.raises(ConfigError, match=r"unknown setting 'server\.prot'"):
        load_config(environ={"SKILLPROXY_SERVER__PROT": "1"})


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", environ={})


def test_example_file_lists_every_setting_with_a_comment_and_its_default() -> None:
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    lines = text.splitlines()
    for section, field in Config.model_fields.items():
        assert section in data, f"[{section}] missing from config.example.toml"
        model = field.annotation
        assert model is not None
        for key, sub in model.model_fields.items():
            assert key in data[section], f"{section}.{key} missing from config.example.toml"
            default = list(sub.default) if isinstance(sub.default, tuple) else sub.default
            assert data[section][key] == default, f"{section}.{key} differs from its default"
            index = next(i for i, line in enumerate(lines) if line.startswith(f"{key} ="))
            assert _commented(lines, index), f"{section}.{key} has no comment above it"
    assert load_config(EXAMPLE, environ={}) == Config()


def _commented(lines: list[str], index: int) -> bool:
    """A setting is commented when a `#` line heads the run of settings it belongs to."""
    for line in reversed(lines[:index]):
        stripped = line.strip()
        if stripped.startswith("#"):
            return True
        if not stripped or stripped.startswith("["):
            return False
    return False


def test_list_settings_come_from_the_environment_as_json_or_commas() -> None:
    config = load_config(
        environ={
            "SKILLPROXY_SERVER__CLIENT_KEYS": "sk-one, sk-two",
            "SKILLPROXY_SERVER__TRUSTED_PROXIES": '["10.0.0.0/8", "::1"]',
        }
    )
    assert config.server.client_keys == ("sk-one", "sk-two")
    assert config.server.trusted_proxies == ("10.0.0.0/8", "::1")
    with pytest.raises(ConfigError, match="SKILLPROXY_SERVER__CLIENT_KEYS: not a JSON list"):
        load_config(environ={"SKILLPROXY_SERVER__CLIENT_KEYS": "[oops"})


@pytest.mark.parametrize(
    ("section", "key", "value", "why"),
    [
        ("upstream", "openai_base_url", "not-a-url", "http:// or https:// URL with a host"),
        ("upstream", "anthropic_base_url", "ftp://x", "http:// or https:// URL"),
        ("upstream", "openai_base_url", "http://x/v1?k=1", "query or fragment"),
        ("server", "trusted_proxies", ["10.0.0.300"], "not an IP address or CIDR range"),
        ("privacy", "patterns", ["(unclosed"], "not a regular expression"),
        ("privacy", "detect", ["ssn"], "privacy.detect"),
    ],
)
def test_malformed_values_are_refused_naming_the_setting(
    section: str, key: str, value: object, why: str
) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.{key}.*{re.escape(why)}|{re.escape(why)}"):
        load_config(environ={}, overrides={section: {key: value}})
