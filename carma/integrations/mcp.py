"""An MCP (Model Context Protocol) server over a CARMA store: the memory an assistant keeps
(`pip install 'carma[mcp]'`; started by `carma mcp`).

Tools: remember, recall, revise, forget, history, health (read-only: recall, history,
health). The server reaches only the namespaces it was started with (the first is the
default): an id from any other namespace is "not found", exactly as one never written.
Every write goes through CARMA's log; a bad argument comes back as a tool error with one
clear line, and the server goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

import carma
from carma.addresses import is_loopback
from carma.integrations import missing_extra
from carma.lines import MAX_JSON_CHARS, MAX_JSON_DEPTH, parse_json, position_or_moment

try:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ToolAnnotations
except ImportError as exc:  # the core install has no MCP SDK
    raise missing_extra("mcp", exc) from exc

__all__ = ["build_server", "check_address", "serve"]

TRANSPORTS = ("stdio", "http")
RECALL_K_MAX = 50  # hits a model can read in one answer
INSTRUCTIONS = """\
A long-term memory (CARMA). Save facts worth keeping with `remember`; before answering from
what you were told earlier, `recall` it. A recalled memory has a `status`: "healthy" is the
text exactly as saved; "approximate" is a reconstruction CARMA made after damage, not the
original words (its `fidelity` and `expected_recall` say how close it is: treat it as a
paraphrase and say so); "lost" has no text left. Correct a memory with `revise` (its history
keeps every version) and erase one for good with `forget`."""


class Remembered(BaseModel):
    id: str = Field(description="The memory's id: use it to revise, forget or see its history.")
    outcome: Literal["added", "revised", "unchanged", "restored"] = Field(
        description="added: new; unchanged: this text was already remembered (same id)."
    )


class Recalled(BaseModel):
    hits: list[carma.Hit] = Field(description="Nearest first; `score` is the cosine (-1 to 1).")


class Forgotten(BaseModel):
    id: str
    forgotten: bool = Field(description="false: it had been forgotten already.")


class History(BaseModel):
    id: str
    events: list[carma.HistoryEntry] = Field(description="Oldest first: what happened, when.")


class Health(BaseModel):
    score: float = Field(description="1.0: every memory is whole; less: some are repaired.")
    live: int
    by_status: dict[str, int]
    report: dict[str, Any] = Field(description="CARMA's whole health report.")


Metadata = Annotated[
    dict[str, Any] | str | None,
    Field(description='Optional labels, a JSON object of flat values, e.g. {"topic": "travel"}.'),
]


def build_server(
    memory: carma.Memory,
    *,
    namespaces: Sequence[str] = ("default",),
    read_only: bool = False,
) -> MCPServer:
    """The MCP server over an open store. `namespaces`: the ones its tools may reach, the
    first being where they work when a call names none."""
    namespaces = list(dict.fromkeys(namespaces))
    if not namespaces:
        raise carma.InvalidInput("the server needs at least one namespace")
    for namespace in namespaces:
        # Memory.export checks its namespace before it reads anything: CARMA's own rule.
        next(iter(memory.export(namespace)), None)
    default = namespaces[0]
    server = MCPServer(
        name="carma",
        instructions=INSTRUCTIONS,
        version=carma.__version__,
        log_level="WARNING",
    )
    reading = ToolAnnotations(readOnlyHint=True, openWorldHint=False)

    def reachable(namespace: str | None) -> str:
        if namespace is None:
            return default
        if namespace not in namespaces:
            raise carma.InvalidInput(
                f"namespace {namespace!r} is not open to this server; it has: "
                + ", ".join(namespaces)
            )
        return namespace

    def own_namespace(key: str) -> str:
        """The namespace of a fragment this server may reach; "not found" for any other."""
        try:
            found: str | None = memory.get(key).namespace
        except carma.FragmentGone:  # deleted: its history still names its namespace
            first = memory.history(key)[0].detail
            found = first.get("namespace")
        if found not in namespaces:
            raise carma.FragmentNotFound(key)
        return found

    @_tool(server, reading)
    def recall(
        query: Annotated[str, Field(description="What to look for, in plain words.")],
        k: Annotated[int, Field(ge=1, le=RECALL_K_MAX, description="How many memories.")] = 5,
        namespace: Annotated[str | None, Field(description="Default: the server's.")] = None,
        where: Annotated[
            dict[str, Any] | str | None,
            Field(
                description='Only memories whose metadata match: {"topic": "travel"}, or '
                'with operators, e.g. {"$and": [{"year": {"$gte": 2024}}, '
                '{"tag": {"$in": ["a", "b"]}}]}.'
            ),
        ] = None,
        mode: Annotated[
            Literal["semantic", "keyword", "hybrid"],
            Field(
                description='"semantic" (by meaning), "keyword" (exact words: names, ids, codes) '
                'or "hybrid" (both, fused).'
            ),
        ] = "semantic",
        as_of: Annotated[
            int | str | None,
            Field(
                description="Recall as the memory was then: a log position or an ISO 8601 time "
                "(e.g. 2026-11-30T12:00:00Z)."
            ),
        ] = None,
    ) -> Recalled:
        """Find the memories nearest in meaning to `query`. Check each hit's `status`: only
        "healthy" is the exact saved text; "approximate" is a labelled reconstruction (see
        `fidelity`, `expected_recall`)."""
        hits = memory.search(
            query,
            k=k,
            namespace=reachable(namespace),
            where=_json_object(where, "where"),
            mode=mode,
            as_of=as_of if isinstance(as_of, int) else position_or_moment(as_of, "as_of"),
        )
        return Recalled(hits=hits)

    @_tool(server, reading)
    def history(id: Annotated[str, Field(description="A memory's id.")]) -> History:
        """Every event of one memory, oldest first: written, revised, damaged and repaired,
        deleted or forgotten, with when."""
        own_namespace(id)
        return History(id=id, events=memory.history(id))

    @_tool(server, reading)
    def health() -> Health:
        """How whole the memory is: the share of memories intact, and how many were rebuilt
        approximately or lost."""
        report = memory.health(namespaces)  # the server's namespaces only: no count of others
        return Health(
            score=report["score"],
            live=report["live"],
            by_status=report["by_status"],
            report=json.loads(json.dumps(report, default=str)),
        )

    if read_only:
        return server

    writing = ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False)
    erasing = ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False)

    @_tool(server, writing)
    def remember(
        text: Annotated[str, Field(description="One self-contained fact, in plain words.")],
        namespace: Annotated[str | None, Field(description="Default: the server's.")] = None,
        metadata: Metadata = None,
    ) -> Remembered:
        """Save a fact for later. The same text again changes nothing and returns its id."""
        result = memory.add_many(
            [
                {
                    "text": text,
                    "namespace": reachable(namespace),
                    "metadata": _json_object(metadata, "metadata"),
                }
            ]
        )
        outcome = next(
            o for o in ("added", "revised", "unchanged", "restored") if getattr(result, o)
        )
        return Remembered(id=result.ids[0], outcome=outcome)

    @_tool(server, writing)
    def revise(
        id: Annotated[str, Field(description="The memory's id.")],
        text: Annotated[str | None, Field(description="Its corrected text.")] = None,
        metadata: Metadata = None,
    ) -> carma.FragmentRecord:
        """Correct a memory: a new text and/or new metadata. The old version stays in its
        history."""
        own_namespace(id)
        return memory.revise(id, text=text, metadata=_json_object(metadata, "metadata"))

    @_tool(server, erasing)
    def forget(
        id: Annotated[str, Field(description="The memory's id.")],
        reason: Annotated[str, Field(description="Why it must be erased (kept in the log).")],
    ) -> Forgotten:
        """Erase a memory for good: its text can never be read again, by anyone. Its
        history keeps only that it existed and was forgotten, when and why."""
        own_namespace(id)
        return Forgotten(id=id, forgotten=memory.forget(id, reason))

    return server


def check_address(transport: str, host: str) -> None:
    """Refuse a transport or an address before anything is opened (InvalidInput)."""
    if transport not in TRANSPORTS:
        raise carma.InvalidInput(f"transport is one of {', '.join(TRANSPORTS)}")
    if transport == "http" and not is_loopback(host):
        # MCP's HTTP transport has no keys here: anyone who reached it would hold the tools.
        raise carma.InvalidInput(
            f"carma mcp over HTTP binds to loopback only ({host} is not): it has no keys; "
            "for remote clients use carma serve, whose keys are scoped to namespaces"
        )


def serve(
    memory: carma.Memory,
    *,
    namespaces: Sequence[str] = ("default",),
    read_only: bool = False,
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Serve the store until the client goes away (stdio) or the process is stopped (http:
    streamable HTTP at http://HOST:PORT/mcp)."""
    check_address(transport, host)
    server = build_server(memory, namespaces=namespaces, read_only=read_only)
    if transport == "stdio":
        server.run("stdio")
    else:
        # A request body is bounded as CARMA bounds any JSON it is given.
        server.run("streamable-http", host=host, port=port, max_request_body_size=MAX_JSON_CHARS)


def _tool(server: MCPServer, annotations: ToolAnnotations) -> Callable[[Callable], Callable]:
    """Register a tool whose CARMA errors reach the model as tool errors, one clear line
    each (the SDK's own check of the arguments' types comes first)."""

    def register(function: Callable) -> Callable:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except carma.CarmaError as exc:
                raise ToolError(str(exc)) from None

        guarded.__name__ = function.__name__
        guarded.__doc__ = function.__doc__
        guarded.__signature__ = _signature(function)  # type: ignore[attr-defined]
        guarded.__annotations__ = function.__annotations__
        server.add_tool(guarded, annotations=annotations, structured_output=True)
        return function

    return register


def _signature(function: Callable) -> Any:
    import inspect

    return inspect.signature(function, eval_str=True)


def _json_object(value: dict[str, Any] | str | None, what: str) -> dict[str, Any] | None:
    """An object argument, given as an object or as JSON text (models send both), within
    CARMA's bounds on any JSON it is given: size and nesting."""
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_json(value, what)
    else:
        _check_depth(value, what)
        if len(json.dumps(value, ensure_ascii=False)) > MAX_JSON_CHARS:
            raise carma.InvalidInput(f"{what} is larger than {MAX_JSON_CHARS} characters")
    if not isinstance(value, dict):
        raise carma.InvalidInput(f"{what} must be a JSON object")
    return value


def _check_depth(value: Any, what: str) -> None:
    """Nesting within MAX_JSON_DEPTH, measured without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise carma.InvalidInput(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
