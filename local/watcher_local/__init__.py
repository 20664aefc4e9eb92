"""The whole system on one machine: `watcher local` (stack), `watcher demo`, `watcher status`."""
