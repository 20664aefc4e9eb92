"""Delivery, shared by both node agents: events wait in a durable local ``outbox`` (SQLite), a ``sender``
thread posts them to the backend in batches and retries, ``agent_http`` serves ``/metrics`` and
``/healthz``, and ``runtime`` starts and stops the three together. ``outbox_cli`` is ``watcher outbox``.
"""
