"""One frozen, typed configuration: defaults < TOML file < environment < command line.

Every setting lives in a section of the TOML file (`[server] port = 8080`) and can be
overridden by an environment variable named `SKILLPROXY_<SECTION>__<KEY>` in upper case
(`SKILLPROXY_SERVER__PORT=9000`). Unknown keys, unknown `SKILLPROXY_*` variables and
malformed values stop the start with a message naming the key, because a typo that is
silently ignored is a proxy that quietly does the wrong thing in production.
The one exception is `CLIENT_VARIABLES`: read by the admin commands (`SKILLPROXY_URL`, where
the running proxy is), never by the server, so `serve` passes them over.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from store.url import StoreURL, StoreURLError, hide_password, parse_store_url

ENV_PREFIX = "SKILLPROXY_"
CLIENT_VARIABLES = frozenset({"SKILLPROXY_URL"})


class ConfigError(Exception):
    """The configuration cannot be used; the message names the offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    default_skillbook: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    client_keys: tuple[str, ...] = ()
    """When set, a `/v1` request must carry one of these keys (Bearer or x-api-key)."""
    allow_open_relay: bool = False
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or CIDR ranges whose `X-Forwarded-For` names the real client."""

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR range") from None
        return value


class UpstreamConfig(_Section):
    openai_base_url: str = "https://api.openai.com/v1"
    anthropic_base_url: str = "https://api.anthropic.com"

    @field_validator("openai_base_url", "anthropic_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        if url.query or url.fragment:
            raise ValueError(f"must not carry a query or fragment, got {value!r}")
        return value

    api_key: str = ""
    anthropic_api_key: str = ""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=600.0, gt=0)
    max_connections: int = Field(default=0, ge=0)


class StoreConfig(_Section):
    url: str = "sqlite:///skillproxy.db"
    """`sqlite:///path` or a bare file path; `path`, its older name, is read as `url` by
    `load_config` (see `_renamed`)."""

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        try:
            parse_store_url(value, setting="")
        except StoreURLError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def location(self) -> StoreURL:
        return parse_store_url(self.url)


class TracesConfig(_Section):
    redact_params: tuple[str, ...] = (
        "key", "api_key", "api-key", "apikey", "token", "access_token", "refresh_token",
        "id_token", "sig", "signature", "password", "secret", "client_secret", "code", "auth",
    )  # fmt: skip
    """Query parameters (and stored headers) whose values are replaced before a trace is kept."""
    queue_size: int = Field(default=20_000, gt=0)
    on_full: Literal["drop", "block"] = "drop"
    block_timeout_ms: int = Field(default=50, ge=0)
    batch_size: int = Field(default=5000, gt=0)
    flush_interval_ms: int = Field(default=1000, gt=0)


class AdminConfig(_Section):
    token: str = ""


class PrivacyConfig(_Section):
    """Personal data found in conversations is replaced by `[EMAIL]`, `[PHONE]`, ... ."""

    learner: bool = True
    """Before anything reaches the learner's model."""
    stored_skillbooks: tuple[str, ...] = ()
    """Skillbooks whose traces are redacted before they are stored; "*" for all of them."""
    detect: tuple[Literal["email", "phone", "card", "iban"], ...] = (
        "email", "phone", "card", "iban",
    )  # fmt: skip
    patterns: tuple[str, ...] = ()
    """Extra regular expressions; each match becomes `[REDACTED]`."""

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return value


class SkillbookConfig(_Section):
    token_budget: int = Field(default=800, ge=0)
    ranking: Literal["usefulness", "relevance"] = "usefulness"
    auto_approve: bool = False
    refresh_interval_ms: int = Field(default=500, gt=0)


class LearnerConfig(_Section):
    enabled: bool = False
    model: str = ""
    api_base: str = ""
    api_key_env: str = ""
    request_timeout_s: float = Field(default=120.0, gt=0)
    interval_s: float = Field(default=60.0, gt=0)
    min_new_episodes: int = Field(default=1, ge=1)
    episode_idle_s: float = Field(default=300.0, ge=0)
    settle_s: float = Field(default=600.0, ge=0)
    max_episodes_per_run: int = Field(default=50, ge=1)
    run_token_cap: int = Field(default=200_000, ge=0)
    daily_token_cap: int = Field(default=2_000_000, ge=0)
    signal_only: bool = False
    sample_rest: float = Field(default=1.0, ge=0, le=1)
    max_context_tokens: int = Field(default=12_000, ge=1000)
    similarity: Literal["embedding", "lexical"] = "embedding"
    similarity_threshold: float = Field(default=0.0, ge=0, le=1)
    """0: the measured default of the similarity in use."""
    judge_pairs: bool = True
    max_lessons_per_episode: int = Field(default=3, ge=0, le=20)
    recursive: bool = False
    recursive_threshold_tokens: int = Field(default=8000, ge=0)
    recursive_max_steps: int = Field(default=6, ge=1)
    sandbox_timeout_s: float = Field(default=5.0, gt=0)
    sandbox_memory_mb: int = Field(default=256, ge=32)
    lease_s: float = Field(default=600.0, gt=0)
    retries: int = Field(default=4, ge=0, le=20)
    retry_max_wait_s: float = Field(default=30.0, ge=0)
    max_attempts: int = Field(default=5, ge=1)
    pattern_every: int = Field(default=5, ge=0)
    pattern_window: int = Field(default=30, ge=2, le=200)


class MetricsConfig(_Section):
    """`GET /metrics` (Prometheus). Labels a client chooses (skillbook, model) keep the first
    `max_*` values seen; later ones are counted under "other", so a client inventing names
    cannot grow the proxy's memory or Prometheus's series without bound."""

    enabled: bool = True
    token: str = ""
    """A bearer token that may read /metrics only; the admin token is accepted too."""
    max_skillbooks: int = Field(default=50, ge=1, le=10_000)
    max_models: int = Field(default=50, ge=1, le=10_000)


OTEL_EXTRA = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+\Z")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


class OtelConfig(_Section):
    """One OpenTelemetry span per proxied exchange, sent to an OTLP/HTTP endpoint."""

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    headers: dict[str, str] = {}
    """Header name -> the name of the environment variable holding its value: secrets stay
    out of the file."""
    service_name: str = Field(default="skillproxy", min_length=1)
    capture_content: bool = False
    timeout_s: float = Field(default=10.0, gt=0, le=20)
    """Per export; also bounds how long shutdown waits for the last spans (the trace sink is
    given 30 s to stop)."""

    def __hash__(self) -> int:  # the one dict among the settings: hashed as sorted pairs
        return hash((*self.model_dump(exclude={"headers"}).values(), *sorted(self.headers.items())))

    @field_validator("endpoint")
    @classmethod
    def _http_endpoint(cls, value: str) -> str:
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        return value

    @field_validator("headers")
    @classmethod
    def _variable_names(cls, value: dict[str, str]) -> dict[str, str]:
        for header, variable in value.items():
            if not _HEADER_NAME.match(header):
                raise ValueError(f"{header!r} is not an HTTP header name")
            if not _VARIABLE_NAME.match(variable):
                raise ValueError(  # the value not echoed: it may be the secret itself
                    f"{header}: give the name of an environment variable holding the value "
                    "(never the value itself)"
                )
        return value

    @model_validator(mode="after")
    def _usable(self, info: ValidationInfo) -> OtelConfig:
        """Enabled, it must be able to work: the extra installed, every header's variable set
        (in the environment the configuration was read from)."""
        if not self.enabled:
            return self
        if missing := otel_missing():
            raise ValueError(
                f"otel.enabled needs the OpenTelemetry SDK ({missing} is not installed): "
                "pip install 'skillproxy[otel]'"
            )
        environ = (info.context or {}).get("environ", os.environ)
        for header, variable in self.headers.items():
            if variable not in environ:
                raise ValueError(f"otel.headers: {header}'s variable {variable} is not set")
        return self


def otel_missing() -> str | None:
    """The first module of the `otel` extra that cannot be imported, or None."""
    for name in OTEL_EXTRA:
        try:
            found = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            found = None
        if found is None:
            return name
    return None


class Config(_Section):
    server: ServerConfig = ServerConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    store: StoreConfig = StoreConfig()
    traces: TracesConfig = TracesConfig()
    admin: AdminConfig = AdminConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    skillbook: SkillbookConfig = SkillbookConfig()
    learner: LearnerConfig = LearnerConfig()
    metrics: MetricsConfig = MetricsConfig()
    otel: OtelConfig = OtelConfig()


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Build the config from an optional TOML file, the environment and explicit overrides.

    `overrides` is `{section: {key: value}}`, used by the command line; `None` values are skipped.
    """
    data: dict[str, dict[str, Any]] = {}
    if path is not None:
        _merge(data, _read_toml(Path(path)), source=str(path))
    environ = os.environ if environ is None else environ
    _merge(data, _from_environ(environ), source="environment")
    if overrides:
        cleaned = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in overrides.items()}
        _merge(data, cleaned, source="command line")
    try:
        return Config.model_validate(data, context={"environ": environ})
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _from_environ(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    sections = Config.model_fields
    found: dict[str, dict[str, Any]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in CLIENT_VARIABLES:
            continue
        section, sep, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if not sep or section not in sections or not key:
            raise ConfigError(
                f"unknown environment variable {name}: expected {ENV_PREFIX}<SECTION>__<KEY> "
                f"with a section among {', '.join(sections)}"
            )
        found.setdefault(section, {})[key] = _list_from_text(section, key, value)
    return found


def _list_from_text(section: str, key: str, value: str) -> Any:
    """A list setting from the environment: a JSON array, or comma-separated values; a table
    setting (`otel.headers`): a JSON object."""
    model = Config.model_fields[section].annotation
    field = getattr(model, "model_fields", {}).get(key)
    if field is not None and get_origin(field.annotation) is dict:
        try:
            return json.loads(value)
        except ValueError:
            raise ConfigError(
                f"{ENV_PREFIX}{section.upper()}__{key.upper()}: not a JSON object"
            ) from None
    if field is None or get_origin(field.annotation) is not tuple:
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            raise ConfigError(
                f"{ENV_PREFIX}{section.upper()}__{key.upper()}: not a JSON list"
            ) from None
    return [item.strip() for item in text.split(",") if item.strip()]


def _merge(into: dict[str, dict[str, Any]], new: Mapping[str, Any], *, source: str) -> None:
    for section, values in new.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: [{section}] must be a table of settings, got {values!r}")
        into.setdefault(section, {}).update(_renamed(section, dict(values), source))


def _renamed(section: str, values: dict[str, Any], source: str) -> dict[str, Any]:
    """Older names of settings, read as the new ones before sources are layered, so a later
    source's `url` overrides an earlier one's `path`."""
    if section == "store" and "path" in values:
        if "url" in values:
            raise ConfigError(f"{source}: give store.url or store.path (its older name), not both")
        values["url"] = values.pop("path")
    return values


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting {key!r}")
        elif err["type"] == "value_error":  # our own validators: the message says it all
            message = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"invalid setting {key!r}: {message}")
        else:
            shown = hide_password(repr(err.get("input")))
            lines.append(f"invalid setting {key!r}: {err['msg']} (got {shown})")
    return "; ".join(lines)
