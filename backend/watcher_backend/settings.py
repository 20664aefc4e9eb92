"""Backend settings: command-line flags override environment variables, which override defaults.

Every setting has one environment variable (``WATCHER_...``). Tokens may also come from a file
(``WATCHER_INGEST_TOKEN_FILE`` etc.), which is how Kubernetes Secrets are usually mounted.
A bad value raises ``SettingsError`` naming the setting; the CLI prints that one line and exits 2.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import overload

from watcher_core import cell_tokens, logs, secret_settings, wire

SCOPES = ("ingest", "read", "admin")
# WATCHER_AUTH: tokens (on), none on loopback only (off), none on any address (off-on-network).
AUTH_MODES = ("on", "off", "off-on-network")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_DATA_DIR = Path("data")


class SettingsError(ValueError):
    """A setting has a bad value. ``setting`` is the environment variable or flag to fix."""

    def __init__(self, setting: str, message: str):
        super().__init__(f"{setting}: {message}")
        self.setting = setting


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 3000
    database_url: str = f"sqlite:///{DEFAULT_DATA_DIR / 'watcher.db'}"
    snapshot_dir: Path = DEFAULT_DATA_DIR / "snapshots"
    # scope -> token; a scope whose token is not configured cannot be used by anyone
    # (except that the admin token also grants read).
    tokens: Mapping[str, str] = field(default_factory=dict)
    # False only for local development (--insecure-no-auth / WATCHER_AUTH=off): every request gets every scope.
    auth_enabled: bool = True
    # Authentication off is refused on an address other hosts reach, unless this is said too
    # (--insecure-no-auth-on-network / WATCHER_AUTH=off-on-network): one mistyped flag must not open the
    # students' code and the admin erase to a whole network.
    no_auth_on_network: bool = False
    retention_days: int | None = None
    retention_interval_seconds: float = 3600.0
    max_body_bytes: int = wire.MAX_BATCH_BYTES
    cors_origins: tuple[str, ...] = ()
    # Gaps between a student's events longer than this are idle time, not active time (time on task).
    idle_gap_seconds: int = 300
    run_migrations: bool = True
    # How long `watcher backend` waits for the database to answer at start (it may be starting too).
    database_wait_seconds: float = 30.0
    log_level: str = "INFO"
    # WATCHER_LOG_FORMAT (watcher_core.logs): plain by default, so `kubectl logs` shows the deployment
    # guide's start-up lines exactly; text adds time, level and component; json for log collectors.
    log_format: str = "plain"
    # Sources whose requests *without* a token may read the old platform API (its GETs only; never a write,
    # /api/v1 or admin): the JCode platform backend sends no token and has no setting for one. Empty (the
    # default): tokens everywhere. The operator sets it from spec.platform (docs/security.md: trust model).
    legacy_reads_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # The secret the notebook hook's per-student tokens are derived from (watcher_core.cell_tokens). Unset: no
    # notebook token is accepted.
    notebook_key: str | None = None

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def validate(self) -> Settings:
        if not (0 < self.port < 65536):
            raise SettingsError("WATCHER_PORT", f"port must be 1-65535, got {self.port}")
        if self.log_level not in LOG_LEVELS:
            raise SettingsError(
                "WATCHER_LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)} (any case), got {self.log_level!r}"
            )
        if not (self.database_url.startswith("sqlite") or self.database_url.startswith("postgres")):
            raise SettingsError(
                "WATCHER_DATABASE_URL",
                f"must start with sqlite:/// or postgresql:// (got {self.database_url.split(':', 1)[0]!r})",
            )
        if self.retention_days is not None and self.retention_days < 1:
            raise SettingsError("WATCHER_RETENTION_DAYS", "must be a whole number of days >= 1")
        if self.max_body_bytes < 1024:
            raise SettingsError("WATCHER_MAX_BODY_BYTES", "must be at least 1024")
        if self.idle_gap_seconds < 1:
            raise SettingsError("WATCHER_IDLE_GAP_SECONDS", "must be at least 1")
        for origin in self.cors_origins:
            if origin == "*":
                raise SettingsError("WATCHER_CORS_ORIGINS", "'*' is not allowed; list the dashboard origins")
        for scope, token in self.tokens.items():
            if scope not in SCOPES:
                raise SettingsError("tokens", f"unknown scope {scope!r}")
            if len(token) < 16:
                raise SettingsError(f"WATCHER_{scope.upper()}_TOKEN", "must be at least 16 characters")
        if self.notebook_key is not None and len(self.notebook_key) < cell_tokens.MIN_KEY_LENGTH:
            raise SettingsError(
                "WATCHER_NOTEBOOK_KEY",
                f"must be at least {cell_tokens.MIN_KEY_LENGTH} characters (e.g. openssl rand -hex 32)",
            )
        if not self.auth_enabled and not self.no_auth_on_network and not is_loopback(self.host):
            raise SettingsError(
                "WATCHER_AUTH",
                f"authentication is off but the backend would listen on {self.host}, where anyone who reaches it "
                "reads every student's code and can erase it; listen on 127.0.0.1 (--host 127.0.0.1), or add "
                "--insecure-no-auth-on-network (WATCHER_AUTH=off-on-network) if no one else can reach this network",
            )
        if self.auth_enabled and not self.tokens:
            raise SettingsError(
                "WATCHER_INGEST_TOKEN",
                "no tokens configured; set WATCHER_INGEST_TOKEN, WATCHER_READ_TOKEN and WATCHER_ADMIN_TOKEN "
                "(or *_FILE), or run with --insecure-no-auth (WATCHER_AUTH=off) for local development",
            )
        return self


@overload
def _int(env: Mapping[str, str], name: str, default: int) -> int: ...
@overload
def _int(env: Mapping[str, str], name: str, default: None) -> int | None: ...
def _int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(name, f"must be a whole number, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:  # nan/inf parse as floats but are no duration
        raise SettingsError(name, f"must be a positive number, got {raw!r}")
    return value


def read_token(env: Mapping[str, str], scope: str) -> str | None:
    """The token of one scope from ``WATCHER_<SCOPE>_TOKEN`` or the file named by ``..._TOKEN_FILE``."""
    return read_secret(env, f"WATCHER_{scope.upper()}_TOKEN")


def read_secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret from ``name`` or from the file named by ``name_FILE`` (watcher_core.secret_settings)."""
    try:
        return secret_settings.read_secret(env, name)
    except secret_settings.SecretSettingError as exc:
        raise SettingsError(exc.setting, exc.message) from None


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    defaults = Settings()
    tokens = {scope: tok for scope in SCOPES if (tok := read_token(env, scope))}
    auth = env.get("WATCHER_AUTH", "on").strip().lower()
    if auth not in AUTH_MODES:
        raise SettingsError("WATCHER_AUTH", f"must be one of {', '.join(AUTH_MODES)}, got {auth!r}")
    origins = tuple(o.strip() for o in env.get("WATCHER_CORS_ORIGINS", "").split(",") if o.strip())
    _check_legacy_zones(env)
    legacy_reads_from = parse_networks(env.get("WATCHER_LEGACY_READS_FROM", ""), "WATCHER_LEGACY_READS_FROM")
    return Settings(
        host=env.get("WATCHER_HOST", defaults.host),
        port=_int(env, "WATCHER_PORT", defaults.port),
        database_url=env.get("WATCHER_DATABASE_URL") or defaults.database_url,
        snapshot_dir=Path(env.get("WATCHER_SNAPSHOT_DIR") or defaults.snapshot_dir),
        tokens=tokens,
        auth_enabled=(auth == "on"),
        no_auth_on_network=(auth == "off-on-network"),
        retention_days=_int(env, "WATCHER_RETENTION_DAYS", None),
        retention_interval_seconds=_float(
            env, "WATCHER_RETENTION_INTERVAL_SECONDS", defaults.retention_interval_seconds
        ),
        max_body_bytes=_int(env, "WATCHER_MAX_BODY_BYTES", defaults.max_body_bytes),
        cors_origins=origins,
        idle_gap_seconds=_int(env, "WATCHER_IDLE_GAP_SECONDS", defaults.idle_gap_seconds),
        log_level=(env.get("WATCHER_LOG_LEVEL", "").strip() or defaults.log_level).upper(),
        database_wait_seconds=_float(env, "WATCHER_DATABASE_WAIT_SECONDS", defaults.database_wait_seconds),
        legacy_reads_from=legacy_reads_from,
        log_format=_log_format(env),
        notebook_key=read_secret(env, "WATCHER_NOTEBOOK_KEY"),
    )


def _log_format(env: Mapping[str, str]) -> str:
    try:
        return logs.log_format(env, default="plain")
    except ValueError:
        raise SettingsError(
            logs.FORMAT_ENV, f"must be one of {', '.join(logs.FORMATS)}, got {env.get(logs.FORMAT_ENV)!r}"
        ) from None


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_networks(raw: str, setting: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated addresses or CIDRs (``10.42.0.0/16,10.0.0.7``)."""
    out = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(setting, f"{item!r} is not an address or CIDR (e.g. 10.42.0.0/16)") from None
    return tuple(out)


def _check_legacy_zones(env: Mapping[str, str]) -> None:
    """The old API's zone settings are read per request; a typo must stop the start, not answer 500 later."""
    from .legacy import timezones

    for read_zone, name in (
        (timezones.snapshot_path_zone, timezones.SNAPSHOT_TZ_ENV),
        (timezones.naive_body_zone, timezones.NAIVE_TZ_ENV),
    ):
        try:
            read_zone(env)
        except timezones.LegacyTimeError as exc:
            raise SettingsError(name, str(exc).split(": ", 1)[-1]) from None
