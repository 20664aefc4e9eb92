"""HTTP routers, one per resource. ``legacy`` (the old platform API) is optional and included last."""
