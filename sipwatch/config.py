"""Configuration: a TOML file plus SIPWATCH_* environment overrides (pydantic-settings).

Owns: the settings schema and turning every invalid value into one ConfigError whose message
names the key and the reason. Probe specs are the probes' own frozen dataclasses (a union keyed
by `kind`), so the file, the CLI and the code share one definition of each field.

Environment overrides use `__` for nesting: SIPWATCH_SIP__T1_S=0.25, SIPWATCH_DNS__NAMESERVERS
='["127.0.0.1"]'. Secrets are never values here: probes name a password file or env variable.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from sipwatch.catalog import find_config
from sipwatch.cluster.settings import ClusterSettings
from sipwatch.errors import ConfigError
from sipwatch.hooks import HookSpec
from sipwatch.probes import kinds
from sipwatch.probes._sip import ProbeContext
from sipwatch.sip.transaction import Timers

if TYPE_CHECKING:
    from sipwatch.probes.kind import ProbeSpecBase as ProbeSpec
else:
    # The union keyed by `kind` of every declared kind's spec (sipwatch.probes.KIND_MODULES),
    # built here at import. mypy checks `probes` as the specs' common protocol instead.
    ProbeSpec = Annotated[
        Union[tuple(kind.spec for kind in kinds().values())],  # noqa: UP007
        Field(discriminator="kind"),
    ]


class SipSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    t1_s: float = Field(0.5, gt=0, le=10, description="RFC 3261 T1, RTT estimate")
    t2_s: float = Field(4.0, gt=0, le=64, description="RFC 3261 T2, max retransmit interval")
    t4_s: float = Field(5.0, ge=0, le=64, description="RFC 3261 T4, Timer K on UDP")
    user_agent: str = "sipwatch"

    @field_validator("t2_s")
    @classmethod
    def _t2_not_below_t1(cls, v: float, info: Any) -> float:
        t1 = info.data.get("t1_s")
        if t1 is not None and v < t1:
            raise ValueError("t2_s must be >= t1_s")
        return v


class DnsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nameservers: list[str] = Field(default_factory=list, description="empty: resolv.conf")
    port: int = Field(53, gt=0, lt=65536)
    timeout_s: float = Field(2.0, gt=0, le=30)
    prefer_ipv6: bool = False


DEFAULT_VERDICT_FILE = "/run/sipwatch/verdict"


class DaemonSettings(BaseModel):
    """`sipwatch run`: the HTTP endpoint and how much history the daemon keeps."""

    model_config = ConfigDict(extra="forbid")
    http_host: str = Field("127.0.0.1", description="bind address of the HTTP endpoint")
    http_port: int = Field(9160, ge=0, lt=65536, description="0 disables the endpoint")
    ready_when_yellow: bool = Field(False, description="/readyz answers 200 on yellow too")
    jitter: float = Field(0.1, ge=0, le=0.5, description="intervals stretched by up to this")
    history: int = Field(50, ge=1, le=10000)
    failure_history: int = Field(200, ge=1, le=10000)
    shutdown_timeout_s: float = Field(10.0, gt=0, le=120)
    keep_connections: bool = Field(
        False,
        description="keep each target's TCP/TLS/WS connection open between probe runs: "
        "cheaper, but a run over a kept connection does not see what a client that connects "
        "now sees (a WebSocket upgrade refused, a certificate or TLS setup broken)",
    )
    reassert_s: float = Field(
        30.0, ge=1, le=3600, description="hand the current verdict over again this often"
    )
    # The verdict where a shell reads it with builtins (sipwatch/verdict_file.py): the OCF
    # shim's monitor and keepalived's vrrp_script. "" turns it off.
    verdict_file: str = Field(DEFAULT_VERDICT_FILE, max_length=4096)
    # Securing the endpoint (sipwatch/http_security.py): TLS, and basic auth from a file of
    # name:bcrypt-hash lines; the paths in http_open_paths stay open for load balancers.
    http_tls_cert_file: str = Field("", max_length=4096)
    http_tls_key_file: str = Field("", max_length=4096)
    http_users_file: str = Field("", max_length=4096)
    http_open_paths: list[str] = Field(default_factory=lambda: ["/livez", "/readyz", "/active"])

    @model_validator(mode="after")
    def _tls_needs_both_files(self) -> DaemonSettings:
        if bool(self.http_tls_cert_file) != bool(self.http_tls_key_file):
            raise ValueError("http_tls_cert_file and http_tls_key_file go together")
        return self

    # HAProxy's agent-check (sipwatch/agent_check.py): one line per TCP connection. 0: off.
    agent_check_host: str = Field("127.0.0.1", description="bind address of the agent-check")
    agent_check_port: int = Field(0, ge=0, lt=65536, description="0 disables the agent-check")
    # keepalived's track_file (sipwatch/track_file.py): 0 healthy, 1 red or ineligible. "": off.
    track_file: str = Field("", max_length=4096)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIPWATCH_", env_nested_delimiter="__", extra="forbid"
    )
    sip: SipSettings = Field(default_factory=lambda: SipSettings())
    dns: DnsSettings = Field(default_factory=lambda: DnsSettings())
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    # A shipped policy's name (policies/NAME.toml, looked up like probe sets) or a path;
    # a relative path is taken from the config file's directory (sipwatch.policy.load).
    policy: str = Field("default", min_length=1)
    daemon: DaemonSettings = Field(default_factory=lambda: DaemonSettings())
    cluster: ClusterSettings = Field(default_factory=lambda: ClusterSettings())
    probes: list[ProbeSpec] = Field(default_factory=list)
    hooks: list[HookSpec] = Field(default_factory=list)  # sipwatch/hooks.py

    @field_validator("probes")
    @classmethod
    def _unique_names(cls, v: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for spec in v:
            if spec.name in seen:
                raise ValueError(f"duplicate probe name {spec.name!r}")
            seen.add(spec.name)
        return v

    @model_validator(mode="after")
    def _quorum_guard_has_a_vip(self) -> Settings:
        if self.cluster.release_vip_without_quorum and not any(
            p.kind == "vip" for p in self.probes
        ):
            raise ValueError(
                'cluster.release_vip_without_quorum needs a probe of kind "vip" '
                "(the address to release)"
            )
        return self

    def context(self) -> ProbeContext:
        from sipwatch.sip.resolve import ResolverConfig

        resolver = ResolverConfig(
            nameservers=tuple(self.dns.nameservers),
            port=self.dns.port,
            timeout_s=self.dns.timeout_s,
            prefer_ipv6=self.dns.prefer_ipv6,
        )
        timers = Timers(self.sip.t1_s, self.sip.t2_s, self.sip.t4_s)
        return ProbeContext(timers=timers, resolver=resolver, user_agent=self.sip.user_agent)


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def load_settings(path: Path | str | None = None) -> Settings:
    """Load settings from `path` (TOML file, or the name of a shipped probe set) with
    environment overrides. Raises ConfigError."""
    return load_config(path)[0]


def load_config(path: Path | str | None = None) -> tuple[Settings, str]:
    """load_settings(), and the sha256 of the very bytes the settings came from ("" without
    a file). The file is read once: an operator's editor or a deploy writing it while a
    reload reads it cannot give settings of one version and the digest of another (which
    `sipwatch check` compares), nor a second read that fails where the first passed."""
    import hashlib

    source = "environment and defaults"
    data: dict[str, Any] | None = None
    digest = ""
    if path is not None:
        toml_path = find_config(path)
        source = str(toml_path)
        try:
            raw = toml_path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"config file {toml_path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {toml_path}: {exc.strerror}") from None
        digest = hashlib.sha256(raw).hexdigest()
        try:
            data = tomllib.loads(raw.decode("utf-8"))  # a clear error with line/column
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {toml_path} is not UTF-8 (TOML is): {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {toml_path} is not valid TOML: {exc}") from None
        except RecursionError:  # tomllib reads nested arrays and inline tables recursively
            raise ConfigError(f"config file {toml_path}: values nested too deeply") from None

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if data is not None:
                # What TomlConfigSettingsSource does with the file, from the one read above.
                sources.append(InitSettingsSource(settings_cls, init_kwargs=data))
            return tuple(sources)

    try:
        return _Loaded(), digest
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
