"""`watcher operator`: run the WatcherDeployment operator (kopf) in this process.

Settings come from flags, else environment variables, else defaults. Every value is checked here, before
kopf starts: a bad one is one line naming the setting (`watcher operator: bad setting NAME: why`) and exit 2.
The parser itself reads no environment, so `--help` works whatever the environment holds. Then one API
call: without the kopf peering CRD the operator runs standalone and says so (peering_fallback).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import random
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from watcher_core import logs

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_PEERING = "watcher-operator"
DEFAULT_RESYNC_SECONDS = 60.0
DEFAULT_RETRY_SECONDS = 30.0
DEFAULT_METRICS_PORT = 9090
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
# The peering CRD kopf needs, by scope: --all-namespaces elects through the cluster-scoped kind.
PEERING_CRDS = {True: "clusterkopfpeerings.kopf.dev", False: "kopfpeerings.kopf.dev"}
PEERING_CHECK_TIMEOUT = 10.0  # seconds per request of that start-up check: an API that hangs delays kopf little

log = logging.getLogger("watcher_operator")


class SettingsError(ValueError):
    """A setting has a bad value; ``setting`` names the environment variable or flag to fix."""

    def __init__(self, setting: str, message: str):
        super().__init__(f"{setting}: {message}")
        self.setting = setting


def positive_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A duration in seconds from ``env[name]`` (unset or blank: ``default``); finite and > 0."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"must be a number of seconds, got {raw!r}") from None
    return _positive(value, name, raw)


def metrics_port(value: str | int | None, setting: str) -> int:
    """A TCP port 0..65535 (0: no metrics server); None means the default."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_METRICS_PORT
    try:
        port = int(value)
    except ValueError:
        raise SettingsError(setting, f"must be a port number 0..65535 (0: off), got {value!r}") from None
    if not 0 <= port <= 65535:
        raise SettingsError(setting, f"must be a port number 0..65535 (0: off), got {value!r}")
    return port


def _positive(value: float, name: str, shown: object) -> float:
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(name, f"must be a positive number of seconds, got {shown!r}")
    return value


def log_level(value: str | None, setting: str) -> str:
    """``value`` upper-cased if it is one of LOG_LEVELS (any case accepted); None means INFO."""
    level = (value or "INFO").strip().upper()
    if level not in LOG_LEVELS:
        raise SettingsError(setting, f"must be one of {', '.join(LOG_LEVELS)} (any case), got {value!r}")
    return level


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...]
    all_namespaces: bool
    peering: str
    standalone: bool
    priority: int | None  # None: random at start
    liveness: str
    resync_seconds: float
    retry_seconds: float
    log_level: str
    metrics_port: int = DEFAULT_METRICS_PORT  # 0: off


def resolve(args: argparse.Namespace, env: Mapping[str, str]) -> OperatorSettings:
    """The operator's settings from parsed flags over ``env``; SettingsError names the first bad one."""
    standalone_raw = env.get("WATCHER_OPERATOR_STANDALONE", "").strip().lower()
    if standalone_raw not in _TRUE + _FALSE:
        raise SettingsError("WATCHER_OPERATOR_STANDALONE", f"must be 1/true or 0/false, got {standalone_raw!r}")
    priority = args.priority
    if priority is None and env.get("WATCHER_OPERATOR_PRIORITY", "").strip():
        raw = env["WATCHER_OPERATOR_PRIORITY"].strip()
        try:
            priority = int(raw)
        except ValueError:
            raise SettingsError("WATCHER_OPERATOR_PRIORITY", f"must be a whole number, got {raw!r}") from None
    if args.resync_seconds is not None:
        resync = _positive(args.resync_seconds, "--resync-seconds", args.resync_seconds)
    else:
        resync = positive_seconds(env, "WATCHER_OPERATOR_RESYNC_SECONDS", DEFAULT_RESYNC_SECONDS)
    retry = positive_seconds(env, "WATCHER_OPERATOR_RETRY_SECONDS", DEFAULT_RETRY_SECONDS)
    if args.log_level is not None:
        level = log_level(args.log_level, "--log-level")
    else:
        level = log_level(env.get("WATCHER_LOG_LEVEL"), "WATCHER_LOG_LEVEL")
    namespaces = tuple(args.namespace or ())
    if not namespaces and not args.all_namespaces:
        namespaces = tuple(n.strip() for n in env.get("WATCHER_OPERATOR_NAMESPACE", "").split(",") if n.strip())
    return OperatorSettings(
        namespaces=namespaces,
        all_namespaces=bool(args.all_namespaces),
        peering=args.peering or env.get("WATCHER_OPERATOR_PEERING", "").strip() or DEFAULT_PEERING,
        standalone=args.standalone or standalone_raw in _TRUE,
        priority=priority,
        liveness=args.liveness if args.liveness is not None else env.get("WATCHER_OPERATOR_LIVENESS", "").strip(),
        resync_seconds=resync,
        retry_seconds=retry,
        log_level=level,
        metrics_port=metrics_port(args.metrics_port, "--metrics-port")
        if args.metrics_port is not None
        else metrics_port(env.get("WATCHER_OPERATOR_METRICS_PORT"), "WATCHER_OPERATOR_METRICS_PORT"),
    )


def peering_crd(settings: OperatorSettings) -> str:
    return PEERING_CRDS[settings.all_namespaces]


def peering_fallback(
    settings: OperatorSettings, crd_present: bool | None, error: str = ""
) -> tuple[OperatorSettings, str | None]:
    """The settings to run with, and the one warning to log (None: nothing to say).

    Given a peering name, kopf waits for its peering CRD before it handles anything, without a word and
    for ever. So a missing CRD means standalone, said once with the fix. ``crd_present`` None: the check
    itself failed (API unreachable, no permission); then peering stays, since two replicas that both ran
    standalone next to an existing CRD would both be active, but the warning still names the way out.
    """
    if settings.standalone or crd_present:
        return settings, None
    crd = peering_crd(settings)
    fix = (
        "install the chart's CRDs (charts/watcher-operator/crds) or run with --standalone / "
        "WATCHER_OPERATOR_STANDALONE=1"
    )
    if crd_present is None:
        return settings, (
            f"cannot check for the peering CRD {crd} ({error}): keeping peering {settings.peering!r}; "
            f"if the CRD is missing the operator waits for it and does nothing: {fix}"
        )
    return dataclasses.replace(settings, standalone=True), f"peering CRD {crd} not found: {fix}; running standalone"


def check_peering(settings: OperatorSettings, crd_exists: Callable[[str], bool]) -> OperatorSettings:
    """Ask the API whether the peering CRD exists (``crd_exists``: name -> bool, raising on failure) and
    apply peering_fallback; logs its warning, if any, as one line."""
    if settings.standalone:
        return settings
    try:
        present: bool | None = crd_exists(peering_crd(settings))
        error = ""
    except Exception as exc:  # noqa: BLE001 - any failure of the check: unknown, said in one line
        present, error = None, " ".join(str(exc).split()) or type(exc).__name__
    settings, warning = peering_fallback(settings, present, error)
    if warning:
        log.warning("%s", warning)
    return settings


def _crd_exists(name: str, kubeconfig: str | None) -> bool:
    from watcher_operator.kubeapi import Kube, load_config  # late, like kopf: the client is slow to import

    api = load_config(kubeconfig)  # the credentials the reconciler uses (handlers.register)
    try:
        return Kube(api, timeout=PEERING_CHECK_TIMEOUT).crd_exists(name)
    finally:
        api.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher operator",
        description="Run the Kubernetes operator that turns WatcherDeployment resources "
        "(watcher.jcode.io/v1alpha1) into the backend, filemon and procmon workloads. "
        "Credentials: in-cluster service account, else KUBECONFIG / ~/.kube/config.",
        epilog="A flag wins over its environment variable. WATCHER_OPERATOR_RETRY_SECONDS (default 30) is the "
        "retry delay after an unsatisfiable spec or a Kubernetes API error. A bad value stops the start "
        "with one line naming the setting (exit 2). See docs/configuration.md for the full table.",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        metavar="NS",
        help="watch only this namespace (repeatable; env WATCHER_OPERATOR_NAMESPACE, comma-separated)",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (needs the cluster-wide RBAC of the chart)",
    )
    p.add_argument(
        "--peering",
        default=None,
        metavar="NAME",
        help="kopf peering object used for leader election between replicas "
        f"(default: {DEFAULT_PEERING}; env WATCHER_OPERATOR_PEERING)",
    )
    p.add_argument(
        "--standalone",
        action="store_true",
        help="no peering: run as the only replica (env WATCHER_OPERATOR_STANDALONE=1 or true); "
        "also chosen, with a warning, when the peering CRD is not installed",
    )
    p.add_argument(
        "--priority",
        type=int,
        default=None,
        metavar="N",
        help="peering priority of this replica; the highest live one is active (env "
        "WATCHER_OPERATOR_PRIORITY, a whole number; default: random, so replicas of one "
        "Deployment never tie: kopf pauses every replica on a tie)",
    )
    p.add_argument(
        "--liveness",
        default=None,
        metavar="URL",
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz "
        "(env WATCHER_OPERATOR_LIVENESS; default: off)",
    )
    p.add_argument(
        "--resync-seconds",
        type=float,
        default=None,
        metavar="S",
        help="full reconcile of every resource this often (env WATCHER_OPERATOR_RESYNC_SECONDS, "
        "default 60); failed reconciles retry after WATCHER_OPERATOR_RETRY_SECONDS (default 30)",
    )
    p.add_argument(
        "--metrics-port",
        default=None,
        metavar="PORT",
        help="serve the operator's Prometheus metrics on this port, /metrics (env WATCHER_OPERATOR_METRICS_PORT; "
        f"default {DEFAULT_METRICS_PORT}; 0: off)",
    )
    p.add_argument(
        "--kubeconfig", default=None, metavar="FILE", help="kubeconfig file (default: in-cluster, then KUBECONFIG)"
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        default=None,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help=f"one of {', '.join(LOG_LEVELS)}, any case (env WATCHER_LOG_LEVEL; default: INFO)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = resolve(args, os.environ)
    except SettingsError as exc:
        sys.stderr.write(f"watcher operator: bad setting {exc}\n")
        return 2
    if not settings.namespaces and not settings.all_namespaces:
        sys.stderr.write(
            "watcher operator: choose --namespace NS or --all-namespaces (or set WATCHER_OPERATOR_NAMESPACE)\n"
        )
        return 2
    try:
        fmt = logs.log_format(os.environ)
    except ValueError as exc:
        sys.stderr.write(f"watcher operator: bad setting {exc}\n")
        return 2
    logs.setup(settings.log_level, "operator", fmt)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's own login reads it

    priority = settings.priority if settings.priority is not None else random.randint(1, 2**31 - 1)

    settings = check_peering(settings, lambda crd: _crd_exists(crd, args.kubeconfig))

    import kopf  # imported late: `watcher operator --help` stays fast

    from watcher_operator import handlers
    from watcher_operator.metrics import OperatorMetrics

    metrics = OperatorMetrics()
    server = None
    if settings.metrics_port:
        try:
            server = metrics.serve(settings.metrics_port)
        except OSError as exc:
            sys.stderr.write(f"watcher operator: cannot serve metrics on port {settings.metrics_port}: {exc}\n")
            return 2
        log.info("metrics on port %d (/metrics)", settings.metrics_port)
    registry = kopf.OperatorRegistry()
    handlers.register(
        registry,
        handlers.HandlerConfig(
            resync_seconds=settings.resync_seconds,
            retry_seconds=settings.retry_seconds,
            kubeconfig=args.kubeconfig,
            metrics=metrics,
        ),
    )
    try:
        kopf.run(
            registry=registry,
            clusterwide=settings.all_namespaces,
            namespaces=settings.namespaces,
            standalone=settings.standalone,
            peering_name=None if settings.standalone else settings.peering,
            priority=priority,
            liveness_endpoint=settings.liveness or None,
        )
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    return 0
