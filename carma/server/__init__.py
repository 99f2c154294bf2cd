"""`carma serve`: CARMA as an HTTP service (the `server` extra: FastAPI, uvicorn,
prometheus-client). docs/server.md is its manual.

keys      keys scoped to namespaces (needs no web framework: `carma keys` uses it)
errors    the JSON error shape and the status of each error
watch     the log followed as it grows: keys, healing counters, dream cycles, health over time
metrics   the Prometheus text of /metrics
app       the FastAPI application: every route, the dashboard and the docs page
service   `serve()`: the store opened, the address checked, uvicorn run and stopped cleanly
static/   the dashboard and the docs page (no external asset: it works offline)

Nothing here is imported by the core; the server is a client of the public API.
"""

#: What a missing extra says (the CLI raises it as a usage error).
MISSING_EXTRA = "carma serve needs the server extra ({name} is not installed): " + (
    "pip install 'carma[server]'"
)
