"""Backend settings: each declared once, as a field of ``Settings`` (watcher_core.settings_spec).

A flag wins over its environment variable (``WATCHER_...``), which wins over the default. Tokens and the
notebook key may also come from a file (``WATCHER_INGEST_TOKEN_FILE`` etc.), which is how Kubernetes
Secrets are usually mounted. A bad value raises ``SettingsError`` naming the setting; ``watcher backend``
prints that one line and exits 2. ``Settings.validate`` holds the checks across settings.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from watcher_core import cell_tokens, logs, settings_spec, wire
from watcher_core.settings_spec import Setting, SettingsError, derived, setting

from .grants import Grant, GrantError, parse_grant
from .legacy import timezones

SCOPES = ("ingest", "read", "admin")
# WATCHER_AUTH: tokens (on), none on loopback only (off), none on any address (off-on-network).
AUTH_MODES = ("on", "off", "off-on-network")
DEFAULT_DATA_DIR = Path("data")
DEFAULT_DATABASE_URL = f"sqlite:///{DEFAULT_DATA_DIR / 'watcher.db'}"

TOKENS = tuple(
    Setting(
        name=f"{scope}_token",
        env=f"WATCHER_{scope.upper()}_TOKEN",
        secret=True,
        parse=settings_spec.min_length(16),
        default_doc="none",
        doc=doc,
    )
    for scope, doc in (
        ("ingest", "token of the `ingest` scope (the agents, the old API's writes); at least 16 characters"),
        ("read", "token of the `read` scope (dashboards, the platform, `watcher status`)"),
        ("admin", "token of the `admin` scope (erasure, the retention run); also grants `read`"),
    )
)
AUTH = Setting(
    name="auth",
    flag="--insecure-no-auth",
    flag_value="off",
    env="WATCHER_AUTH",
    default="on",
    parse=settings_spec.one_of(AUTH_MODES),
    default_doc="`on`",
    doc="`on`: tokens; `off` (what the flag sets): every request gets every scope, for local development "
    "only (logged as a warning), refused unless `--host` is a loopback address (`127.0.0.1`, `::1`, "
    "`localhost`): anyone reaching the backend would read every student's code and could erase it; "
    "`off-on-network`: off on any address too",
)
AUTH_ON_NETWORK = Setting(
    name="auth_off_on_network",
    flag="--insecure-no-auth-on-network",
    flag_value=True,
    default=False,
    doc="authentication off on any address too (`WATCHER_AUTH=off-on-network`); only on a network no one else can use",
)


def database_url(raw: str) -> str:
    url = raw.strip()
    if not (url.startswith("sqlite") or url.startswith("postgres")):
        # the scheme only: the rest may hold a password
        raise ValueError(f"must start with sqlite:/// or postgresql:// (got {url.split(':', 1)[0]!r})")
    return url


def cors_origins(raw: str) -> tuple[str, ...]:
    origins = settings_spec.csv(raw)
    if "*" in origins:
        raise ValueError("'*' is not allowed; list the dashboard origins")
    return origins


def networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated addresses or CIDRs (``10.42.0.0/16,10.0.0.7``)."""
    out = []
    for item in settings_spec.csv(raw):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an address or CIDR (e.g. 10.42.0.0/16)") from None
    return tuple(out)


def time_zone(raw: str) -> str:
    """An IANA zone name (``Asia/Seoul``, ``UTC``); kept as the name, which the dashboard's browser uses."""
    name = raw.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Asia/Seoul, UTC)") from None
    return name


def group_map(raw: str) -> tuple[tuple[str, Grant | None], ...]:
    """``group=course[/section],...``: which courses a single sign-on group reads; ``group=*``: every
    course. A group may appear several times (several sections)."""
    out: list[tuple[str, Grant | None]] = []
    for item in settings_spec.csv(raw):
        group, sep, target = item.rpartition("=")
        group, target = group.strip(), target.strip()
        if not sep or not group:
            raise ValueError(f"{item!r} is not group=course[/section] (e.g. os-ta-1=os/1)")
        if target == "*":
            out.append((group, None))
            continue
        try:
            out.append((group, parse_grant(target)))
        except GrantError as exc:
            raise ValueError(f"{item!r}: {exc}") from None
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    host: str = setting("0.0.0.0", flag="--host", env="WATCHER_HOST", metavar="HOST", doc="address to listen on")
    port: int = setting(
        3000,
        flag="--port",
        env="WATCHER_PORT",
        parse=settings_spec.port(1),
        metavar="PORT",
        doc="TCP port of the API, `/health`, `/ready` and `/metrics`",
    )
    database_url: str = setting(
        DEFAULT_DATABASE_URL,
        flag="--database-url",
        env="WATCHER_DATABASE_URL",
        parse=database_url,
        redact=True,
        metavar="URL",
        default_doc="`sqlite:///data/watcher.db` (relative to the working directory)",
        doc="`sqlite:///relative.db`, `sqlite:////abs/path.db` or `postgresql://user:pw@host:port/db` (also "
        "`postgresql+psycopg://`); anything else is refused. The SQLite folder is created",
    )
    snapshot_dir: Path = setting(
        DEFAULT_DATA_DIR / "snapshots",
        flag="--snapshot-dir",
        env="WATCHER_SNAPSHOT_DIR",
        parse=settings_spec.path,
        metavar="DIR",
        doc="root of the content-addressed snapshot store that filemon writes; read-only is fine",
    )
    # scope -> token; a scope whose token is not configured cannot be used by anyone
    # (except that the admin token also grants read).
    tokens: Mapping[str, str] = derived(*TOKENS, default_factory=dict)
    # False only for local development (--insecure-no-auth / WATCHER_AUTH=off): every request gets every scope.
    auth_enabled: bool = derived(AUTH, AUTH_ON_NETWORK, default=True)
    # Authentication off is refused on an address other hosts reach, unless this is said too
    # (--insecure-no-auth-on-network / WATCHER_AUTH=off-on-network): one mistyped flag must not open the
    # students' code and the admin erase to a whole network.
    no_auth_on_network: bool = False
    # One Python process serves about a core's worth of requests (the GIL); more workers share the port
    # (workers.py). SQLite's lock orders their writes; on PostgreSQL replicas are the other way to scale.
    workers: int = setting(
        1,
        flag="--workers",
        env="WATCHER_WORKERS",
        parse=settings_spec.whole_number(1, 64),
        metavar="N",
        doc="server processes sharing the port (1-64), each with its own connections and group commit; "
        "about one per core the backend may use. Metrics are summed over them",
    )
    retention_days: int | None = setting(
        None,
        flag="--retention-days",
        env="WATCHER_RETENTION_DAYS",
        parse=settings_spec.whole_number(1),
        metavar="N",
        default_doc="off (keep everything)",
        doc="purge events older than N days (N >= 1), at start and then periodically",
    )
    retention_interval_seconds: float = setting(
        3600.0,
        env="WATCHER_RETENTION_INTERVAL_SECONDS",
        parse=settings_spec.seconds(zero=False),
        doc="how often the retention purge runs (seconds > 0)",
    )
    max_body_bytes: int = setting(
        wire.MAX_BATCH_BYTES,
        env="WATCHER_MAX_BODY_BYTES",
        parse=settings_spec.whole_number(1024),
        default_doc="`4194304` (4 MiB)",
        doc="request bodies over this are refused with 413 (plain bytes, >= 1024)",
    )
    cors_origins: tuple[str, ...] = setting(
        (),
        env="WATCHER_CORS_ORIGINS",
        parse=cors_origins,
        default_doc="none (CORS off)",
        doc="comma-separated origins allowed to call the API from a browser; `*` is refused; credentials are "
        "never allowed",
    )
    # Gaps between a student's events longer than this are idle time, not active time (time on task).
    idle_gap_seconds: int = setting(
        300,
        env="WATCHER_IDLE_GAP_SECONDS",
        parse=settings_spec.whole_number(1),
        doc="gaps between a student's events longer than this are breaks, not active time (whole seconds >= 1)",
    )
    run_migrations: bool = setting(
        True,
        flag="--no-migrate",
        flag_value=False,
        default_doc="migrate",
        doc="do not run the schema migrations at start",
    )
    # How long `watcher backend` waits for the database to answer at start (it may be starting too).
    database_wait_seconds: float = setting(
        30.0,
        env="WATCHER_DATABASE_WAIT_SECONDS",
        parse=settings_spec.seconds(zero=False),
        doc="at start, wait this long for the database to answer; then one line naming `WATCHER_DATABASE_URL` "
        "and exit 1",
    )
    log_level: str = logs.level_setting()
    log_format: str = logs.format_setting("plain")
    # Sources whose requests *without* a token may read the old platform API (its GETs only; never a write,
    # /api/v1 or admin): the JCode platform backend sends no token and has no setting for one. Empty (the
    # default): tokens everywhere. The operator sets it from spec.platform (docs/security.md: trust model).
    legacy_reads_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        (),
        env="WATCHER_LEGACY_READS_FROM",
        parse=networks,
        default_doc="none (tokens everywhere)",
        doc="comma-separated addresses or CIDRs whose requests without a token may read the old platform API "
        "(its GETs only; never a write, `/api/v1` or admin), for the JCode platform backend, which cannot "
        "send one. A refused token-less read answers 401 saying why",
    )
    # Single sign-on through an OIDC-aware reverse proxy (oauth2-proxy in front of Keycloak): its headers name
    # who reads, and are believed only from these peers (auth.sso_reader).
    sso_trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        (),
        env="WATCHER_SSO_TRUSTED_PROXIES",
        parse=networks,
        default_doc="none (single sign-on off)",
        doc="comma-separated addresses or CIDRs of the reverse proxy (oauth2-proxy) whose `X-Forwarded-User`, "
        "`X-Forwarded-Email` and `X-Forwarded-Groups` name who reads; from any other peer those headers are "
        "ignored",
    )
    sso_groups: tuple[tuple[str, Grant | None], ...] = setting(
        (),
        env="WATCHER_SSO_GROUPS",
        parse=group_map,
        default_doc="none",
        doc="what each single sign-on group reads: `group=course[/section]`, comma-separated, a group may "
        "repeat (`os-ta-1=os/1,os-prof=os`); `group=*` reads every course. A person reads what all their "
        "groups read; in none of them: 403",
    )
    sso_admin_groups: tuple[str, ...] = setting(
        (),
        env="WATCHER_SSO_ADMIN_GROUPS",
        parse=settings_spec.csv,
        default_doc="none",
        doc="comma-separated single sign-on groups whose members are admins (every course, the admin routes)",
    )
    # The zones of the old API's naive writer times (legacy.timezones).
    legacy_snapshot_zone: timezone = setting(
        timezones.UTC,
        env="WATCHER_LEGACY_SNAPSHOT_TZ",
        parse=timezones.zone,
        default_doc="`UTC`",
        doc="zone of `YYYYMMDD_HHMMSS` in the old API's snapshot write URLs: `UTC`, the old filemon's "
        "container clock, or `KST` (also `Asia/Seoul`, any case) for a writer whose clock is on Korea time",
    )
    legacy_naive_zone: timezone = setting(
        timezones.UTC,
        env="WATCHER_LEGACY_NAIVE_TZ",
        parse=timezones.zone,
        default_doc="`UTC`",
        doc="zone of the old API's log-body `timestamp`s without an offset: `UTC`, the old procmon's and the "
        "notebook hook's `datetime.now()` in a UTC container, or `KST`",
    )
    # The dashboard (/ui): its flags' thresholds, applied when read (the rollups keep the raw numbers), and
    # the zone its times are shown in (stored times stay UTC).
    stuck_compiles: int = setting(
        5,
        env="WATCHER_STUCK_COMPILES",
        parse=settings_spec.whole_number(1),
        doc='the dashboard flags a student "stuck" after this many failing compiles in a row (no successful '
        "one since); whole number >= 1",
    )
    paste_bytes: int = setting(
        800,
        env="WATCHER_PASTE_BYTES",
        parse=settings_spec.whole_number(1),
        doc='the dashboard flags a "large paste" when one save makes a file this many bytes larger (a new '
        "file counts from empty); whole number >= 1",
    )
    time_zone: str = setting(
        "Asia/Seoul",
        env="WATCHER_TIME_ZONE",
        parse=time_zone,
        default_doc="`Asia/Seoul`",
        doc="IANA zone the dashboard shows times and groups days in (times are stored in UTC)",
    )
    # The secret the notebook hook's per-student tokens are derived from (watcher_core.cell_tokens). Unset: no
    # notebook token is accepted.
    notebook_key: str | None = setting(
        None,
        env="WATCHER_NOTEBOOK_KEY",
        secret=True,
        parse=settings_spec.min_length(cell_tokens.MIN_KEY_LENGTH, "e.g. openssl rand -hex 32"),
        default_doc="none (no notebook token accepted)",
        doc=f"the secret (>= {cell_tokens.MIN_KEY_LENGTH} characters) the notebook hook's per-student tokens "
        "are derived from; a genuine token may post `notebook.cell` events of its own student and nothing else",
    )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def validate(self) -> Settings:
        """The checks across settings (each value was checked when it was read)."""
        if not self.auth_enabled and not self.no_auth_on_network and not is_loopback(self.host):
            raise SettingsError(
                "WATCHER_AUTH",
                f"authentication is off but the backend would listen on {self.host}, where anyone who reaches it "
                "reads every student's code and can erase it; listen on 127.0.0.1 (--host 127.0.0.1), or add "
                "--insecure-no-auth-on-network (WATCHER_AUTH=off-on-network) if no one else can reach this network",
            )
        if (self.sso_groups or self.sso_admin_groups) and not self.sso_trusted_proxies:
            raise SettingsError(
                "WATCHER_SSO_TRUSTED_PROXIES",
                "WATCHER_SSO_GROUPS or WATCHER_SSO_ADMIN_GROUPS is set but no proxy is trusted, so no one could "
                "sign in; name the reverse proxy's addresses (e.g. 10.42.3.0/24)",
            )
        if self.sso_trusted_proxies and not (self.sso_groups or self.sso_admin_groups):
            raise SettingsError(
                "WATCHER_SSO_GROUPS",
                "WATCHER_SSO_TRUSTED_PROXIES is set but no group reads anything; map groups to courses "
                "(e.g. os-ta-1=os/1) or set WATCHER_SSO_ADMIN_GROUPS",
            )
        if self.auth_enabled and not self.tokens:
            raise SettingsError(
                "WATCHER_INGEST_TOKEN",
                "no tokens configured; set WATCHER_INGEST_TOKEN, WATCHER_READ_TOKEN and WATCHER_ADMIN_TOKEN "
                "(or *_FILE), or run with --insecure-no-auth (WATCHER_AUTH=off) for local development",
            )
        return self


SETTINGS = settings_spec.settings_of(Settings)


def from_env(env: Mapping[str, str] | None = None, args: argparse.Namespace | None = None) -> Settings:
    """The settings from ``args`` (``watcher backend``'s flags) over ``env``; SettingsError names a bad one."""
    values = settings_spec.resolve(SETTINGS, args, os.environ if env is None else env)
    auth = "off-on-network" if values["auth_off_on_network"] else values["auth"]
    return settings_spec.build(
        Settings,
        values,
        tokens={scope: token for scope in SCOPES if (token := values[f"{scope}_token"])},
        auth_enabled=auth == "on",
        no_auth_on_network=auth == "off-on-network",
    )


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
