"""store/url.py: `parse_store_url`, and its use by core/config.py's `StoreConfig`.

A store location is a bare path (SQLite, as it always was), `sqlite:///relative.db`,
`sqlite:////absolute.db` or `:memory:`; anything else is refused with a message naming the
setting and never repeating a password.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, load_config
from store import StoreURL, StoreURLError, open_store, parse_store_url

ACCEPTED = [
    ("skillproxy.db", "skillproxy.db"),
    ("data/skillproxy.db", "data/skillproxy.db"),
    ("./rel.db", "./rel.db"),
    ("/var/lib/skillproxy/x.db", "/var/lib/skillproxy/x.db"),
    ("  padded.db  ", "padded.db"),
    ("sqlite:///rel.db", "rel.db"),
    ("sqlite:///dir/rel.db", "dir/rel.db"),
    ("sqlite:////abs/x.db", "/abs/x.db"),
    ("SQLite:///upper.db", "upper.db"),
    (":memory:", ":memory:"),
    ("sqlite:///:memory:", ":memory:"),
    ("C:/data/x.db", "C:/data/x.db"),
    ("C:\\data\\x.db", "C:\\data\\x.db"),
]

REFUSED = [
    ("postgresql://user:pw@host/db", "'postgresql' stores are not supported"),
    ("mysql://x", "'mysql' stores are not supported"),
    ("sqlite://host/x.db", "a SQLite URL has no host"),
    ("sqlite:/x", "write SQLite URLs as sqlite:///path"),
    ("sqlite:x.db", "write SQLite URLs as sqlite:///path"),
    ("sqlite:///", "no database file"),
    ("sqlite:///x.db?mode=ro", "no database file"),
    ("", "empty: give a file path"),
    ("   ", "empty: give a file path"),
]


@pytest.mark.parametrize(("value", "path"), ACCEPTED)
def test_accepted_locations_are_sqlite_files(value: str, path: str) -> None:
    assert parse_store_url(value) == StoreURL("sqlite", path)


@pytest.mark.parametrize(("value", "path"), ACCEPTED)
def test_a_parsed_location_prints_as_a_url_that_parses_back_to_it(value: str, path: str) -> None:
    location = parse_store_url(value)

    assert str(location) == f"sqlite:///{path}"
    assert parse_store_url(str(location)) == location


@pytest.mark.parametrize(("value", "why"), REFUSED)
def test_refused_locations_name_the_setting_and_say_why(value: str, why: str) -> None:
    with pytest.raises(StoreURLError) as refused:
        parse_store_url(value)

    assert str(refused.value).startswith("store.url")
    assert why in str(refused.value)


def test_the_message_names_the_setting_it_is_given() -> None:
    with pytest.raises(StoreURLError, match=r"^learner\.store: 'mysql' stores"):
        parse_store_url("mysql://x", setting="learner.store")


def test_a_refused_url_does_not_repeat_its_password() -> None:
    with pytest.raises(StoreURLError) as refused:
        parse_store_url("postgresql://user:pw@host/db")

    message = str(refused.value)
    assert "pw" not in message
    assert "postgresql://user:***@host/db" in message


@pytest.mark.parametrize(
    "value",
    [
        "sqlite://user:s3cret@host/x.db",  # refused for its host
        "postgresql://user:s3c@ret@host/db",  # a raw @ in the password
        "postgresql://user:s3c/ret@host/db",  # a raw / in the password
        "postgresql://host/db?user=u&password=s3cret",
    ],
)
def test_no_refusal_repeats_any_part_of_a_password(value: str) -> None:
    with pytest.raises(StoreURLError) as refused:
        parse_store_url(value)
    assert "s3c" not in str(refused.value) and "ret" not in str(refused.value)
    with pytest.raises(ConfigError) as config_refused:
        load_config(environ={}, overrides={"store": {"url": value}})
    assert "s3c" not in str(config_refused.value)


def test_the_store_url_error_is_a_value_error() -> None:
    assert issubclass(StoreURLError, ValueError)


# --- open_store ---------------------------------------------------------------------------------


def test_open_store_creates_the_file_a_sqlite_url_names(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "x.db"

    store = open_store(f"sqlite:///{target}")
    try:
        assert store.migrate()
    finally:
        store.close()

    assert target.is_file()


def test_open_store_refuses_another_engine_before_touching_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(StoreURLError):
        open_store("postgresql://user:pw@host/db")

    assert list(tmp_path.iterdir()) == []  # once, this made a directory called `postgresql:`


# --- core/config.py: StoreConfig ---------------------------------------------------------------


def store_config(**store: str) -> StoreURL:
    return load_config(environ={}, overrides={"store": store}).store.location


def test_the_default_store_is_skillproxy_db() -> None:
    config = load_config(environ={})

    assert config.store.location == StoreURL("sqlite", "skillproxy.db")


@pytest.mark.parametrize(("value", "path"), ACCEPTED)
def test_store_url_accepts_what_the_parser_accepts(value: str, path: str) -> None:
    config = load_config(environ={}, overrides={"store": {"url": value}})

    assert config.store.url == value  # kept as written
    assert config.store.location == StoreURL("sqlite", path)


@pytest.mark.parametrize(("value", "why"), REFUSED)
def test_store_url_refuses_what_the_parser_refuses(value: str, why: str) -> None:
    with pytest.raises(ConfigError) as refused:
        store_config(url=value)

    assert "'store.url'" in str(refused.value)
    assert why in str(refused.value)


def test_a_refused_store_url_in_the_config_does_not_repeat_its_password() -> None:
    with pytest.raises(ConfigError) as refused:
        store_config(url="postgresql://user:pw@host/db")

    assert "store.url" in str(refused.value)
    assert "pw" not in str(refused.value)


def test_the_older_path_key_means_the_same_setting() -> None:
    config = load_config(environ={}, overrides={"store": {"path": "sqlite:////srv/old.db"}})

    assert config.store.url == "sqlite:////srv/old.db"
    assert config.store.location == StoreURL("sqlite", "/srv/old.db")
    assert store_config(path="legacy.db") == StoreURL("sqlite", "legacy.db")


def test_the_older_path_key_is_checked_like_url() -> None:
    with pytest.raises(ConfigError, match=r"'store\.url'.*'mysql' stores are not supported"):
        store_config(path="mysql://x")


def test_path_and_url_together_are_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        store_config(path="a.db", url="b.db")

    assert "store.url" in str(refused.value)
    assert "store.path" in str(refused.value)


def test_path_and_url_in_one_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[store]\npath = "a.db"\nurl = "b.db"\n')

    with pytest.raises(ConfigError, match="not both"):
        load_config(config, environ={})


def test_the_environment_sets_the_store_url(tmp_path: Path) -> None:
    config_file = tmp_path / "c.toml"
    config_file.write_text('[store]\nurl = "from-file.db"\n')

    config = load_config(config_file, environ={"SKILLPROXY_STORE__URL": "sqlite:////env/x.db"})

    assert config.store.location == StoreURL("sqlite", "/env/x.db")


def test_a_bad_store_url_in_the_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"'store\.url'.*no host"):
        load_config(environ={"SKILLPROXY_STORE__URL": "sqlite://host/x.db"})


def test_a_later_source_url_overrides_an_earlier_sources_older_path_key(tmp_path: Path) -> None:
    """A config file still using `path` must not stop `--db` or the environment overriding it."""
    file = tmp_path / "c.toml"
    file.write_text('[store]\npath = "old.db"\n')
    from_flag = load_config(file, environ={}, overrides={"store": {"url": "flag.db"}})
    assert from_flag.store.url == "flag.db"
    from_env = load_config(file, environ={"SKILLPROXY_STORE__URL": "env.db"})
    assert from_env.store.url == "env.db"
    assert load_config(file, environ={}).store.url == "old.db"


def test_the_command_line_beats_the_environment() -> None:
    config = load_config(
        environ={"SKILLPROXY_STORE__URL": "env.db"}, overrides={"store": {"url": "cli.db"}}
    )

    assert config.store.location == StoreURL("sqlite", "cli.db")
