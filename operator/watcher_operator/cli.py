"""`watcher operator`: run the WatcherDeployment operator (kopf) in this process."""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watcher operator",
        description="Run the Kubernetes operator that turns WatcherDeployment resources "
                    "(watcher.jcode.io/v1alpha1) into the backend, filemon and procmon workloads. "
                    "Credentials: in-cluster service account, else KUBECONFIG / ~/.kube/config.")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=None, metavar="NS",
                       help="watch only this namespace (repeatable; env WATCHER_OPERATOR_NAMESPACE, "
                            "comma-separated)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch every namespace (needs the cluster-wide RBAC of the chart)")
    p.add_argument("--peering", default=os.environ.get("WATCHER_OPERATOR_PEERING", "watcher-operator"),
                   metavar="NAME", help="kopf peering object used for leader election between replicas "
                                        "(default: %(default)s; env WATCHER_OPERATOR_PEERING)")
    p.add_argument("--standalone", action="store_true",
                   default=os.environ.get("WATCHER_OPERATOR_STANDALONE", "") in ("1", "true"),
                   help="no peering: run as the only replica (env WATCHER_OPERATOR_STANDALONE=1)")
    p.add_argument("--priority", type=int,
                   default=int(os.environ["WATCHER_OPERATOR_PRIORITY"]) if os.environ.get("WATCHER_OPERATOR_PRIORITY")
                   else None,
                   help="peering priority of this replica; the highest live one is active (default: random, so "
                        "replicas of one Deployment never tie: kopf pauses every replica on a tie)")
    p.add_argument("--liveness", default=os.environ.get("WATCHER_OPERATOR_LIVENESS", ""), metavar="URL",
                   help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz (default: off)")
    p.add_argument("--resync-seconds", type=float, default=None, metavar="S",
                   help="full reconcile of every resource this often (env WATCHER_OPERATOR_RESYNC_SECONDS, "
                        "default 60)")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then KUBECONFIG)")
    p.add_argument("--log-level", default=os.environ.get("WATCHER_LOG_LEVEL", "INFO"),
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.resync_seconds is not None:
        if args.resync_seconds <= 0:
            sys.stderr.write("watcher operator: --resync-seconds must be positive\n")
            return 2
        os.environ["WATCHER_OPERATOR_RESYNC_SECONDS"] = str(args.resync_seconds)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
        os.environ["WATCHER_OPERATOR_KUBECONFIG"] = args.kubeconfig
    namespaces = args.namespace
    if not namespaces and not args.all_namespaces and os.environ.get("WATCHER_OPERATOR_NAMESPACE"):
        namespaces = [n for n in os.environ["WATCHER_OPERATOR_NAMESPACE"].split(",") if n]
    if not namespaces and not args.all_namespaces:
        sys.stderr.write("watcher operator: choose --namespace NS or --all-namespaces "
                         "(or set WATCHER_OPERATOR_NAMESPACE)\n")
        return 2

    priority = args.priority if args.priority is not None else random.randint(1, 2**31 - 1)

    import kopf  # imported late: `watcher operator --help` stays fast

    from watcher_operator import handlers  # noqa: F401  (registers the handlers)

    try:
        kopf.run(clusterwide=bool(args.all_namespaces), namespaces=namespaces or (),
                 standalone=args.standalone, peering_name=None if args.standalone else args.peering,
                 priority=priority, liveness_endpoint=args.liveness or None)
    except KeyboardInterrupt:
        pass
    return 0
