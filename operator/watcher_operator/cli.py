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
import os
import random
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from watcher_core import logs, settings_spec
from watcher_core.settings_spec import SettingsError, setting

DEFAULT_METRICS_PORT = 9090
# The peering CRD kopf needs, by scope: --all-namespaces elects through the cluster-scoped kind.
PEERING_CRDS = {True: "clusterkopfpeerings.kopf.dev", False: "kopfpeerings.kopf.dev"}
PEERING_CHECK_TIMEOUT = 10.0  # seconds per request of that start-up check: an API that hangs delays kopf little

log = logging.getLogger("watcher_operator")


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = setting(
        (),
        flag="--namespace",
        short="-n",
        env="WATCHER_OPERATOR_NAMESPACE",
        parse=settings_spec.csv,
        repeatable=True,
        exclusive="scope",
        metavar="NS",
        doc="namespaces to manage (the variable: comma-separated); this or `--all-namespaces` is required. The "
        "variable is used only when neither flag is given",
    )
    all_namespaces: bool = setting(
        False,
        flag="--all-namespaces",
        short="-A",
        flag_value=True,
        exclusive="scope",
        doc="manage every namespace (needs the chart's cluster-wide RBAC)",
    )
    peering: str = setting(
        "watcher-operator",
        flag="--peering",
        env="WATCHER_OPERATOR_PEERING",
        metavar="NAME",
        doc="kopf peering object for leader election between replicas",
    )
    standalone: bool = setting(
        False,
        flag="--standalone",
        flag_value=True,
        env="WATCHER_OPERATOR_STANDALONE",
        parse=settings_spec.boolean,
        default_doc="off",
        doc="no peering: this process is the only replica (the variable: `1`/`true`/`yes`/`on` or "
        "`0`/`false`/`no`/`off`, any case). Also chosen, with one warning, when the peering CRD is not installed",
    )
    priority: int | None = setting(
        None,
        flag="--priority",
        env="WATCHER_OPERATOR_PRIORITY",
        parse=settings_spec.whole_number(),
        metavar="N",
        default_doc="random",
        doc="peering priority (a whole number); the highest live replica is active. Random by default because "
        "kopf pauses every replica when priorities tie",
    )
    liveness: str = setting(
        "",
        flag="--liveness",
        env="WATCHER_OPERATOR_LIVENESS",
        metavar="URL",
        default_doc="off",
        doc="serve kopf's liveness probe, e.g. `http://0.0.0.0:8080/healthz`",
    )
    metrics_port: int = setting(
        DEFAULT_METRICS_PORT,
        flag="--metrics-port",
        env="WATCHER_OPERATOR_METRICS_PORT",
        parse=settings_spec.port(),
        metavar="PORT",
        doc="serve the operator's Prometheus metrics at `/metrics`; `0` turns it off. A port already in use "
        "stops the start with one line (exit 2)",
    )
    resync_seconds: float = setting(
        60.0,
        flag="--resync-seconds",
        env="WATCHER_OPERATOR_RESYNC_SECONDS",
        parse=settings_spec.seconds(zero=False),
        metavar="S",
        doc="full reconcile of every resource this often",
    )
    retry_seconds: float = setting(
        30.0,
        env="WATCHER_OPERATOR_RETRY_SECONDS",
        parse=settings_spec.seconds(zero=False),
        doc="retry delay after an unsatisfiable spec or a Kubernetes API error",
    )
    kubeconfig: str | None = setting(
        None,
        flag="--kubeconfig",
        metavar="FILE",
        default_doc="in-cluster service account, then `KUBECONFIG` or `~/.kube/config`",
        doc="credentials: used by the reconciler's client (which then skips the in-cluster credentials) and "
        "set as `KUBECONFIG` for kopf's own connection",
    )
    log_level: str = logs.level_setting()
    log_format: str = logs.format_setting("text")


SETTINGS = settings_spec.settings_of(OperatorSettings)


def resolve(args: argparse.Namespace, env: Mapping[str, str]) -> OperatorSettings:
    """The operator's settings from parsed flags over ``env``; SettingsError names the first bad one."""
    values = settings_spec.resolve(SETTINGS, args, env)
    # --all-namespaces: the variable's namespaces do not narrow it
    return settings_spec.build(OperatorSettings, values, namespaces=() if values.all_namespaces else values.namespaces)


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
        description=settings_spec.fill(
            "Run the Kubernetes operator that turns WatcherDeployment resources (watcher.jcode.io/v1alpha1) into "
            "the backend, filemon and procmon workloads."
        ),
        epilog=settings_spec.epilog(SETTINGS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    settings_spec.add_arguments(p, SETTINGS)
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
    logs.setup(settings.log_level, "operator", settings.log_format)
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig  # kopf's own login reads it

    priority = settings.priority if settings.priority is not None else random.randint(1, 2**31 - 1)

    settings = check_peering(settings, lambda crd: _crd_exists(crd, settings.kubeconfig))

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
            kubeconfig=settings.kubeconfig,
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
