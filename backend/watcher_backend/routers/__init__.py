"""HTTP routers, one per resource. the old platform API is in ``watcher_backend.legacy``, included last."""
