"""procmon: the per-node process monitor (eBPF tracepoints, netlink process connector fallback).

``watcher procmon`` reports every compile (``process.compile``) and run (``process.run``) of a student
through the shared durable outbox. See docs/procmon.md.
"""
