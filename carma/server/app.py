"""The FastAPI application: the Python API one to one over HTTP, keys scoped to namespaces,
/metrics, /healthz and /readyz, the dashboard at / and the docs page at /docs.

Every route but /healthz, /readyz, the dashboard's files and the docs page takes a key
(`Authorization: Bearer KEY`), except on a server bound to loopback while no key exists. A
fragment outside the key's namespaces is answered exactly as an unknown id is (404
not_found): no route tells that it exists. Request bodies are read here, bounded
(MAX_BODY_BYTES: 413 beyond) and parsed with carma.lines' rules (size and nesting), never by
the framework; each route checks its input before it changes anything.

The routes are plain functions (FastAPI runs them in its thread pool): `Memory` is
thread-safe, and writes take their turn inside it.
"""

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

import carma
from carma.domain import (
    CarmaError,
    Draft,
    FragmentGone,
    FragmentNotFound,
    InvalidInput,
    validate_namespace,
)
from carma.lines import MAX_JSON_CHARS, draft_from_line, parse_json, position_or_moment
from carma.server.errors import ApiError, error_body, not_found, status_of
from carma.server.keys import (
    OPEN_GRANT,
    Grant,
    KeyRing,
    KeyUsage,
    checked_rights,
    checked_scope,
    issue_key,
    list_keys,
    revoke_key,
)
from carma.server.metrics import ServerMetrics
from carma.server.watch import Watch

logger = logging.getLogger("carma.server")

#: The largest request body taken, in bytes (413 beyond): carma.lines' bound on any JSON a
#: user gives, which the largest valid import line is far below.
MAX_BODY_BYTES = MAX_JSON_CHARS
BATCH_MAX = 1_000  # items of one add-many
# How often an open server (loopback, no key) looks for a first key in the log: reading it at
# every request would cost each one a query under load.
OPEN_FRESH_S = 0.1
ACTIVITY_MAX = 1_000
STATIC = "static"  # beside this module (package data)
# The dashboard loads nothing from elsewhere, and may not: the browser enforces it.
CONTENT_SECURITY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
NO_RIGHT = {
    "read": "this key cannot read (it has no read right)",
    "write": "this key cannot write (it has no write right)",
    "admin": "this needs a key with the admin right",
}


# -- bodies -------------------------------------------------------------------------------------


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Revision(Body):
    text: str | None = None
    metadata: dict[str, Any] | None = None
    embedding: list[float] | None = None


class ForgetRequest(Body):
    reason: str


class SearchRequest(Body):
    """`query` (text) or `vector`; Memory.search's `mode`, `as_of` (a log position or an
    ISO 8601 time) and `approximate_keywords` as it has them."""

    query: str | None = None
    vector: list[float] | None = None
    k: int = 5
    namespace: str | None = None
    where: dict[str, Any] | None = None  # handed to Memory.search as it is
    mode: str = "semantic"
    as_of: int | str | None = None
    approximate_keywords: bool = False


class Batch(Body):
    items: list[Any] = Field(max_length=BATCH_MAX)


class DreamRequest(Body):
    deep: bool = False


class KeyRequest(Body):
    namespaces: list[str] | None  # None: every namespace
    rights: list[str]
    label: str = ""


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """The request body in the OpenAPI schema (bodies are read by hand, see read_json)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


IMPORT_LINE = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {
                        "text": {"type": "string"},
                        "metadata": {"type": "object"},
                        "namespace": {"type": "string", "default": "default"},
                        "id": {"type": "string"},
                        "embedding": {"type": "array", "items": {"type": "number"}},
                    },
                }
            }
        },
    }
}


async def read_json(request: Request) -> Any:
    """The request's JSON body: at most MAX_BODY_BYTES (413), parsed with CARMA's bounds on
    size and nesting (400 for anything else wrong with it)."""
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        raise ApiError(400, "invalid_input", "Content-Length is not a number")
    if length is not None and int(length) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise ApiError(400, "invalid_input", "the request needs a JSON body")
    return parse_json(body, "the request body")


M = TypeVar("M", bound=BaseModel)


async def optional_json(request: Request) -> Any:
    """The JSON body where one is given, else None."""
    length = request.headers.get("content-length")
    if length == "0" or (length is None and "transfer-encoding" not in request.headers):
        return None
    return await read_json(request)


def _model(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise InvalidInput(f"the body must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "the body"
        raise InvalidInput(f"{where}: {error['msg']}") from None


# -- the application ----------------------------------------------------------------------------


class Service:
    """What the routes share: the store, its keys, the watch over its log, the metrics."""

    def __init__(self, mem: carma.Memory, *, loopback: bool, poll_every: float):
        self.mem = mem
        self.loopback = loopback
        self.usage = KeyUsage(mem.home)
        self.ring = KeyRing(mem, self.usage)
        self.metrics = ServerMetrics(mem)
        self.watch = Watch(
            mem,
            self.ring,
            self.usage,
            on_healing=self.metrics.healing,
            on_cycle=self.metrics.cycle,
            every=poll_every,
        )

    @property
    def open_access(self) -> bool:
        """No key needed: the server listens on loopback only and no key exists. While
        none does, the log is read for one every OPEN_FRESH_S: the first key issued, by any
        process, closes the server within that time."""
        if not self.loopback:
            return False
        self.ring.ensure_fresh(OPEN_FRESH_S)
        return not self.ring.any_active

    def grant_for(self, request: Request) -> Grant:
        header = request.headers.get("authorization")
        if header is None:
            if self.open_access:
                return OPEN_GRANT
            raise ApiError(
                401, "unauthorized", "this server needs a key: Authorization: Bearer KEY"
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "give the key as Authorization: Bearer KEY")
        grant, why = self.ring.authenticate(token.strip())
        if grant is None:
            raise ApiError(401, "unauthorized", why)
        return grant

    # -- namespaces ---------------------------------------------------------------------------

    def namespace_of(self, key: str) -> str | None:
        """The namespace of the fragment with this id, deleted or not; None: no such id.
        ("" where the log cannot tell: only a key for every namespace reaches it.)"""
        try:
            return self.mem.get(key).namespace
        except FragmentNotFound:
            return None
        except FragmentGone:
            for entry in self.mem.history(key):
                if entry.detail.get("namespace"):
                    return entry.detail["namespace"]
            return ""

    def visible(self, grant: Grant, key: str) -> None:
        """404 unless the fragment exists within the key's namespaces: the same 404 as an
        unknown id's."""
        namespace = self.namespace_of(key)
        if namespace is None or not grant.sees(namespace):
            raise not_found(key)

    def check_writable(self, grant: Grant, drafts: list[Draft]) -> None:
        """Every item goes to a namespace of the key's, and no item's id is taken outside
        them (refused as taken, without saying where: 409 id_taken)."""
        for draft in drafts:
            if not grant.sees(draft.namespace):
                raise ApiError(
                    403, "forbidden", f"this key cannot write to namespace {draft.namespace!r}"
                )
        if grant.namespaces is None:
            return
        for draft in drafts:
            if draft.id is not None:
                namespace = self.namespace_of(draft.id)
                if namespace is not None and not grant.sees(namespace):
                    raise id_taken(draft.id)

    def write(self, grant: Grant, drafts: list[Draft]) -> carma.BatchResult:
        self.check_writable(grant, drafts)
        try:
            return self.mem.add_many(drafts)
        except InvalidInput:
            # Another writer may have taken an id meanwhile, in a namespace this key does
            # not hold: say it is taken, never where (the store's message names it).
            self.check_writable(grant, drafts)
            raise


def id_taken(key: str) -> ApiError:
    return ApiError(409, "id_taken", f"the id {key!r} is taken; choose another (or give none)")


def create_app(
    mem: carma.Memory,
    *,
    loopback: bool = True,
    dream_every: float | None = None,
    poll_every: float = 0.5,
) -> FastAPI:
    """The service over an open store (the caller closes it after the application stops).
    `loopback`: the server listens on loopback only, so that with no key configured every
    request may do everything; `dream_every`: seconds between background dream cycles (None:
    none); `poll_every`: seconds between reads of the log's new keys and healing events."""
    service = Service(mem, loopback=loopback, poll_every=poll_every)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        service.ring.refresh()  # the keys before the first request
        service.watch.start()
        if dream_every:
            mem.start_dreaming(dream_every)
        try:
            yield
        finally:
            service.watch.stop()
            service.usage.close()

    app = FastAPI(
        title="CARMA",
        version=carma.__version__,
        summary="A self-healing, event-sourced memory store for AI agents, over HTTP.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their scripts from a CDN: /docs is our own
        redoc_url=None,
    )
    app.state.service = service
    _handle_errors(app)
    app.add_middleware(Timed, metrics=service.metrics)

    # The key is checked on the event loop (it reads memory; the log at most once a second):
    # a sync dependency would cost each request a trip through the thread pool.
    async def grant(request: Request) -> Grant:
        return service.grant_for(request)

    def needs(right: str) -> Any:
        async def check(g: Annotated[Grant, Depends(grant)]) -> Grant:
            if not g.can(right):
                raise ApiError(403, "forbidden", NO_RIGHT[right])
            return g

        return Annotated[Grant, Depends(check)]

    Anyone = Annotated[Grant, Depends(grant)]
    Reader, Writer, Admin = needs("read"), needs("write"), needs("admin")
    Json = Annotated[Any, Depends(read_json)]
    OptionalJson = Annotated[Any, Depends(optional_json)]
    Reason = Annotated[str, Query(max_length=1_000)]

    # -- fragments ------------------------------------------------------------------------------

    @app.post("/v1/fragments", status_code=201, openapi_extra=IMPORT_LINE, tags=["fragments"])
    def add(g: Writer, body: Json) -> dict[str, str]:
        """Store one fragment (an import line); its id and what happened (`added`, `revised`,
        `unchanged`, `restored`)."""
        if not isinstance(body, dict):
            raise InvalidInput("the body must be an import line (a JSON object)")
        result = service.write(g, [draft_from_line(body)])
        outcome = next(
            k for k in ("added", "revised", "unchanged", "restored") if getattr(result, k)
        )
        return {"id": result.ids[0], "outcome": outcome}

    @app.post(
        "/v1/fragments:batch", status_code=201, openapi_extra=_schema(Batch), tags=["fragments"]
    )
    def add_many(g: Writer, body: Json) -> dict[str, Any]:
        """Store up to 1,000 fragments in one transaction: all of them, or none."""
        batch = _model(Batch, body)
        drafts = []
        for number, item in enumerate(batch.items):
            try:
                drafts.append(draft_from_line(item) if isinstance(item, dict) else Draft.of(item))
            except InvalidInput as exc:
                raise InvalidInput(f"item {number}: {exc}") from None
        return service.write(g, drafts).model_dump()

    @app.get("/v1/fragments/{id:path}/history", tags=["fragments"])
    def history(id: str, g: Reader) -> dict[str, Any]:
        """Every event of a fragment, oldest first (a deleted one's too)."""
        service.visible(g, id)
        return {"id": id, "history": [e.model_dump(mode="json") for e in mem.history(id)]}

    @app.post(
        "/v1/fragments/{id:path}/forget", openapi_extra=_schema(ForgetRequest), tags=["fragments"]
    )
    def forget(id: str, g: Writer, body: Json) -> dict[str, Any]:
        """Forget a fragment for good (crypto-shredding), with a reason."""
        reason = _model(ForgetRequest, body).reason
        service.visible(g, id)
        return {"id": id, "forgotten": mem.forget(id, reason)}

    @app.get("/v1/fragments/{id:path}", tags=["fragments"])
    def get(id: str, g: Reader) -> dict[str, Any]:
        """One live fragment."""
        try:
            record = mem.get(id)
        except FragmentGone:
            service.visible(g, id)
            raise
        if not g.sees(record.namespace):
            raise not_found(id)
        return record.model_dump(mode="json")

    @app.patch("/v1/fragments/{id:path}", openapi_extra=_schema(Revision), tags=["fragments"])
    def revise(id: str, g: Writer, body: Json) -> dict[str, Any]:
        """Change a fragment's text, metadata and/or vector."""
        change = _model(Revision, body)
        service.visible(g, id)
        record = mem.revise(id, change.text, change.metadata, embedding=change.embedding)
        return record.model_dump(mode="json")

    @app.delete("/v1/fragments/{id:path}", tags=["fragments"])
    def delete(id: str, g: Writer, reason: Reason = "") -> dict[str, Any]:
        """Delete a fragment (its history stays); `deleted` is false if it was already."""
        service.visible(g, id)
        return {"id": id, "deleted": mem.delete(id, reason)}

    # -- search and export ----------------------------------------------------------------------

    @app.post("/v1/search", openapi_extra=_schema(SearchRequest), tags=["search"])
    def search(g: Reader, body: Json) -> dict[str, Any]:
        """The k fragments nearest to `query` (or to `vector`), within the key's namespaces
        (or one of them)."""
        ask = _model(SearchRequest, body)
        if (ask.query is None) == (ask.vector is None):
            raise InvalidInput("give either query (a text) or vector (a list of floats)")
        if ask.namespace is not None and not g.sees(ask.namespace):
            raise ApiError(403, "forbidden", f"this key cannot read namespace {ask.namespace!r}")
        if ask.vector is not None and ask.mode != "semantic":
            raise InvalidInput("mode: a vector is searched semantically; give query for another")
        as_of = ask.as_of if isinstance(ask.as_of, int) else position_or_moment(ask.as_of, "as_of")
        scope = _scope(g, ask.namespace)

        def one(namespace: str | None) -> list[carma.Hit]:
            if ask.vector is not None:
                return mem.search_by_vector(ask.vector, ask.k, namespace, ask.where, as_of=as_of)
            return mem.search(
                ask.query,  # type: ignore[arg-type]
                ask.k,
                namespace,
                ask.where,
                mode=ask.mode,
                as_of=as_of,
                approximate_keywords=ask.approximate_keywords,
            )

        hits = [h for namespace in scope for h in one(namespace)]
        if len(scope) > 1:  # the best of each namespace's best
            hits = sorted(hits, key=lambda h: h.score, reverse=True)[: ask.k]
        return {"hits": [h.model_dump(mode="json") for h in hits]}

    @app.get("/v1/export", tags=["search"], response_class=StreamingResponse)
    def export(g: Reader, namespace: str | None = None) -> StreamingResponse:
        """Every live fragment in the key's namespaces (or one of them), as JSON lines
        (`carma import` takes them back)."""
        if namespace is not None and not g.sees(namespace):
            raise ApiError(403, "forbidden", f"this key cannot read namespace {namespace!r}")
        scope = _scope(g, namespace)
        for name in scope:
            if name is not None:
                validate_namespace(name)

        def lines() -> Iterator[bytes]:
            for name in scope:
                for line in mem.export_lines(name):
                    yield (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    # -- health and healing ---------------------------------------------------------------------

    @app.get("/v1/health", tags=["health"])
    def health(g: Reader) -> dict[str, Any]:
        """The honest health report of the key's namespaces (every one's: the store's)."""
        report = mem.health(g.scope)
        scope = None if g.namespaces is None else tuple(g.scope or ())
        service.watch.series.add(scope, time.time(), report["score"], min_gap=1.0)
        return report

    @app.get("/v1/activity", tags=["health"])
    def activity(
        g: Reader,
        limit: Annotated[int, Query(ge=1, le=ACTIVITY_MAX)] = 100,
        before: Annotated[int | None, Query(ge=0)] = None,
    ) -> dict[str, Any]:
        """What the dashboard follows: the latest events of the key's fragments (newest
        first, by log position), the health score over time, and (admin) the dream cycles."""
        events = mem.recent_history(limit, g.scope, before)
        scope = None if g.namespaces is None else tuple(g.scope or ())
        return {
            "position": mem.log.position(),
            "events": [e.model_dump(mode="json") for e in events],
            "health": service.watch.series.points(scope),
            "cycles": service.watch.recent_cycles() if g.can("admin") else [],
        }

    @app.post("/v1/dream", openapi_extra=_schema(DreamRequest), tags=["health"])
    def dream(g: Admin, body: OptionalJson) -> dict[str, Any]:
        """One scrub-and-heal cycle now (`{"deep": true}`: every event's checksum read); its
        report (the whole store's counts)."""
        deep = False if body is None else _model(DreamRequest, body).deep
        report = mem.dream(deep)
        report["calibration"] = {
            ns: c for ns, c in report.get("calibration", {}).items() if g.sees(ns)
        }
        return report

    @app.get("/v1/verify", tags=["health"])
    def verify(g: Admin) -> dict[str, Any]:
        """Check the log's keyed hash chain."""
        return mem.verify()

    # -- keys -----------------------------------------------------------------------------------

    def within(g: Grant, namespaces: list[str] | None) -> bool:
        """Whether a key for these namespaces is within this key's (no key makes a wider one)."""
        if g.namespaces is None:
            return True
        return namespaces is not None and set(namespaces) <= g.namespaces

    @app.get("/v1/keys", tags=["keys"])
    def keys(g: Admin) -> dict[str, Any]:
        """The keys within this key's namespaces, with their use (never a secret)."""
        return {"keys": [k for k in list_keys(mem) if within(g, k["namespaces"])]}

    @app.post("/v1/keys", status_code=201, openapi_extra=_schema(KeyRequest), tags=["keys"])
    def create_key(g: Admin, body: Json) -> dict[str, str]:
        """Issue a key (shown once) within this key's namespaces and rights."""
        ask = _model(KeyRequest, body)
        scope, rights = checked_scope(ask.namespaces), checked_rights(ask.rights)
        if not within(g, scope) or not set(rights) <= g.rights:
            raise ApiError(403, "forbidden", "a key can only make keys within its own scope")
        key, key_id = issue_key(mem, scope, rights, ask.label)
        service.ring.refresh()
        return {"key": key, "id": key_id}

    @app.delete("/v1/keys/{key_id}", tags=["keys"])
    def revoke(key_id: str, g: Admin, reason: Reason = "") -> dict[str, Any]:
        """Revoke a key within this key's namespaces."""
        service.ring.refresh()
        record = next((k for k in service.ring.keys() if k.id == key_id), None)
        if record is None or not within(g, record.namespaces):
            raise ApiError(404, "not_found", f"no key with id {key_id!r}")
        revoked = revoke_key(mem, key_id, reason)
        service.ring.refresh()
        return {"id": key_id, "revoked": revoked}

    @app.get("/v1/access", tags=["keys"])
    def access(g: Anyone) -> dict[str, Any]:
        """What the presented key may do (or, with no key on loopback, that all is open)."""
        return {**g.as_dict(), "open": g is OPEN_GRANT}

    # -- operations -----------------------------------------------------------------------------

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics(request: Request) -> Response:
        """Prometheus' text format (needs the admin right once keys exist)."""
        if not service.grant_for(request).can("admin"):
            raise ApiError(403, "forbidden", NO_RIGHT["admin"])
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> JSONResponse:
        """Ready when the store answers and every projection keeps up with the log."""
        report = mem.health([])  # no namespace: the cheapest report, with lag and errors
        ready = not report["projection_errors"]
        return JSONResponse(
            {
                "status": "ready" if ready else "not_ready",
                "lag": report["lag"],
                "projection_errors": report["projection_errors"],
            },
            status_code=200 if ready else 503,
        )

    # -- pages ----------------------------------------------------------------------------------

    for route, name, media in (
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/dashboard.js", "dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard.css", "dashboard.css", "text/css; charset=utf-8"),
        ("/docs", "docs.html", "text/html; charset=utf-8"),
        ("/docs.js", "docs.js", "text/javascript; charset=utf-8"),
    ):
        app.add_api_route(route, _page(name, media), methods=["GET"], include_in_schema=False)
    return app


def _page(name: str, media: str) -> Callable[[], Response]:
    content = resources.files("carma.server").joinpath(STATIC, name).read_bytes()

    def page() -> Response:
        return Response(
            content,
            media_type=media,
            headers={"Content-Security-Policy": CONTENT_SECURITY, "Cache-Control": "no-cache"},
        )

    return page


def _scope(g: Grant, namespace: str | None) -> list[str | None]:
    """The namespaces a read covers: the one asked for, else every one of the key's (None:
    the whole store, in one search)."""
    if namespace is not None:
        return [namespace]
    if g.namespaces is None:
        return [None]
    return list(g.scope or [])


class Timed:
    """Each request's latency by method, route template (never the id in it) and status: a
    plain ASGI middleware, which leaves streamed answers alone."""

    def __init__(self, app: Any, metrics: ServerMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            self.metrics.requests.labels(
                method=scope["method"],
                route=getattr(route, "path", "unmatched"),
                status=str(status),
            ).observe(time.perf_counter() - started)


def _handle_errors(app: FastAPI) -> None:
    """Every error as {"error": {"code", "message"}}: never a traceback, never a framework's
    own shape."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=headers)

    @app.exception_handler(CarmaError)
    async def carma_error(_: Request, exc: CarmaError) -> JSONResponse:
        status, code = status_of(exc)
        if status >= 500:
            logger.error("%s: %s", type(exc).__name__, exc)
        return JSONResponse(error_body(code, str(exc)), status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path"))
        return JSONResponse(
            error_body("invalid_input", f"{where or 'the request'}: {error.get('msg')}"), 400
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(error_body(code, message), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return JSONResponse(
            error_body("internal", f"unexpected error ({type(exc).__name__}); see the log"), 500
        )
