"""Research exports of the event store (``watcher export``). See docs/export.md."""
