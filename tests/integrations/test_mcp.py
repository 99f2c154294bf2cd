"""`carma mcp` as an assistant meets it: the MCP SDK's own client against the server as a real
subprocess, over stdio and over streamable HTTP, on a real store on disk (the lexical
embedder, so no model loads)."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

import carma
from carma.testing import Damage, apply_damage

CARMA = [sys.executable, "-c", "from carma.cli import main; main()"]
ALL_TOOLS = {"remember", "recall", "revise", "forget", "history", "health"}
STARTUP_S = 60


def stdio(home: Path, *options: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=CARMA[0],
        args=[*CARMA[1:], "mcp", "--home", str(home), "--embedder", "hashing", *options],
        env={"HF_HUB_OFFLINE": "1"},
    )


def text_of(result) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def call(client: Client, tool: str, **arguments):
    """A tool's structured answer; the call must succeed."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    return result.structured_content


async def refused(client: Client, tool: str, **arguments) -> str:
    """A tool error's message; the call must fail as a tool error, not crash the server."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return text_of(result)


async def test_over_stdio_memories_outlive_a_restart_and_damage(tmp_path):
    home = tmp_path / "home"
    async with Client(stdio(home, "--namespace", "alice")) as client:
        listed = await client.list_tools()
        assert {tool.name for tool in listed.tools} == ALL_TOOLS
        assert all(tool.description and tool.output_schema for tool in listed.tools)
        tea = await call(
            client, "remember", text="Alice drinks green tea.", metadata={"k": "drink"}
        )
        again = await call(client, "remember", text="Alice drinks green tea.")
        assert again == {"id": tea["id"], "outcome": "unchanged"}  # nothing recorded twice
        await call(client, "remember", text="Alice was born in Lisbon.", metadata='{"k": "bio"}')
        revised = await call(client, "revise", id=tea["id"], text="Alice drinks black tea.")
        assert revised["version"] == 2 and revised["namespace"] == "alice"

    # The writes went through the log: CARMA's own API sees them, and the chain verifies.
    with carma.open(home) as mem:
        assert [e.kind for e in mem.history(tea["id"])] == ["written", "revised"]
        written_at = mem.history(tea["id"])[1].position - 1
        assert mem.verify()["ok"]
        # Damage every copy but the log: cache files gone or flipped, the index file dropped.
        done = apply_damage(
            mem,
            [Damage("unlink-cache", 0), Damage("flip-cache", 1), Damage("drop-index-file")],
        )
        assert len(done) == 3

    async with Client(stdio(home, "--namespace", "alice")) as client:
        hits = (await call(client, "recall", query="what does Alice drink", k=2))["hits"]
        assert hits[0]["text"] == "Alice drinks black tea."
        assert hits[0]["status"] == "healthy" and hits[0]["fidelity"] == 1.0
        assert hits[0]["metadata"] == {"k": "drink"}
        only_bio = await call(client, "recall", query="Alice", where={"k": "bio"})
        assert [h["text"] for h in only_bio["hits"]] == ["Alice was born in Lisbon."]
        not_bio = await call(client, "recall", query="Alice", where={"k": {"$ne": "bio"}})
        assert [h["text"] for h in not_bio["hits"]] == ["Alice drinks black tea."]
        lisbon = await call(client, "recall", query="Lisbon", mode="keyword")
        assert [h["text"] for h in lisbon["hits"]] == ["Alice was born in Lisbon."]
        # As of the position before the revision (the first write, the second, then it).
        then = await call(client, "recall", query="tea", k=1, as_of=str(written_at))
        assert [h["text"] for h in then["hits"]] == ["Alice drinks green tea."]
        assert "as_of" in await refused(client, "recall", query="tea", as_of="yesterday")
        assert "mode" in await refused(client, "recall", query="tea", mode="fuzzy")
        events = (await call(client, "history", id=tea["id"]))["events"]
        assert [e["kind"] for e in events][:2] == ["written", "revised"]
        assert (await call(client, "health"))["live"] == 2


RIVERS = [
    "Rivers carry sediment from the mountains down to the sea.",
    "The river delta is built from sediment carried by the water.",
    "Mountains erode slowly as rain and rivers carry rock away.",
    "Sediment settles where the river slows near the sea.",
    "A glacier carves a valley as it moves down the mountain.",
]


async def test_a_reconstruction_is_recalled_labelled(tmp_path):
    home = tmp_path / "home"
    with carma.open(home, embedder=carma.HashingEmbedder()) as mem:
        mem.add_many([{"text": t, "id": f"k{i}", "namespace": "geo"} for i, t in enumerate(RIVERS)])
        # The body destroyed in the log and in its cache file: only a reconstruction is left.
        apply_damage(mem, [Damage("flip-event", 150), Damage("unlink-cache")], ["k2"])
        mem.dream()
        rebuilt = mem.get("k2")
        assert rebuilt.status == "approximate"
    async with Client(stdio(home, "--namespace", "geo")) as client:
        hits = (await call(client, "recall", query=rebuilt.text, k=5))["hits"]
        labelled = {h["id"]: (h["status"], h["fidelity"], h["text"]) for h in hits}
        assert labelled["k2"] == ("approximate", rebuilt.fidelity, rebuilt.text)
        assert rebuilt.fidelity < 1.0 and "expected_recall" in hits[0]
        assert all(labelled[f"k{i}"] == ("healthy", 1.0, RIVERS[i]) for i in (0, 1, 3, 4))


async def test_forget_really_forgets(tmp_path):
    home = tmp_path / "home"
    async with Client(stdio(home)) as client:
        secret = await call(client, "remember", text="The door code is 4711.")
        await call(client, "remember", text="The door is painted blue.")
        assert await call(client, "forget", id=secret["id"], reason="user asked") == {
            "id": secret["id"],
            "forgotten": True,
        }
        hits = (await call(client, "recall", query="door code", k=5))["hits"]
        assert [h["text"] for h in hits] == ["The door is painted blue."]
        kinds = [e["kind"] for e in (await call(client, "history", id=secret["id"]))["events"]]
        assert kinds[-1] == "forgotten"
        assert "was deleted" in await refused(client, "revise", id=secret["id"], text="4712")
    with carma.open(home) as mem:
        with pytest.raises(carma.FragmentGone):
            mem.get(secret["id"])
        assert all("4711" not in line["text"] for line in mem.export_lines())
        assert mem.verify()["ok"]


async def test_bad_arguments_are_tool_errors_and_the_server_goes_on(tmp_path):
    home = tmp_path / "home"
    with carma.open(home, embedder=carma.HashingEmbedder()) as mem:
        bob = mem.add("Bob's bank password is hunter2.", namespace="bob")
    deep: dict = {}
    for _ in range(100):
        deep = {"a": deep}
    async with Client(stdio(home, "--namespace", "alice")) as client:
        before = await call(client, "health")
        assert "text is empty" in await refused(client, "remember", text="   ")
        assert "nests deeper than 32" in await refused(client, "remember", text="x", metadata=deep)
        assert "not valid JSON" in await refused(client, "remember", text="x", metadata="{oops")
        assert "metadata" in await refused(client, "remember", text="x", metadata={"a": {"b": 1}})
        assert "greater than or equal to 1" in await refused(client, "recall", query="x", k=0)
        assert "not open to this server" in await refused(
            client, "recall", query="password", namespace="bob"
        )
        assert "no fragment with id 'nope'" in await refused(client, "history", id="nope")
        assert "reason" in await refused(client, "forget", id="nope")
        # Bob's memory, from Alice's server: as unknown as an id never written.
        for tool, arguments in [
            ("history", {}),
            ("revise", {"text": "changed"}),
            ("forget", {"reason": "malice"}),
        ]:
            message = await refused(client, tool, id=bob, **arguments)
            assert message.endswith(f"no fragment with id {bob!r}")
        assert (await call(client, "recall", query="bank password"))["hits"] == []
        assert await call(client, "health") == before  # nothing changed
    with carma.open(home) as mem:
        record = mem.get(bob)
        assert (record.text, record.version) == ("Bob's bank password is hunter2.", 1)


async def test_read_only_offers_no_writes(tmp_path):
    home = tmp_path / "home"
    with carma.open(home, embedder=carma.HashingEmbedder()) as mem:
        mem.add("The launch is on Friday.")
        position = mem.log.position()
    async with Client(stdio(home, "--read-only")) as client:
        listed = await client.list_tools()
        assert {tool.name for tool in listed.tools} == {"recall", "history", "health"}
        hits = (await call(client, "recall", query="launch"))["hits"]
        assert [h["text"] for h in hits] == ["The launch is on Friday."]
        result = await client.call_tool("remember", {"text": "sneaky"})
        assert result.is_error
    with carma.open(home) as mem:
        assert mem.log.position() == position


async def test_health_counts_only_the_servers_namespaces(tmp_path):
    home = tmp_path / "home"
    with carma.open(home, embedder=carma.HashingEmbedder()) as mem:
        mem.add("The launch is on Friday.", namespace="assistant")
        mem.add("Salaries are reviewed in March.", namespace="payroll")
        mem.add("Bonuses are paid in April.", namespace="payroll")
    async with Client(stdio(home, "--namespace", "assistant")) as client:
        health = await call(client, "health")
    assert health["live"] == 1  # the payroll namespace is not even counted
    assert "payroll" not in json.dumps(health)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_http(home: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [*CARMA, "mcp", "--home", str(home), "--embedder", "hashing"]
        + ["--transport", "http", "--port", str(port)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:  # until the port takes a connection
        if server.poll() is not None:
            pytest.fail(f"the server exited: {server.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    pytest.fail(f"the server did not listen on port {port} within {STARTUP_S} s")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=30)


async def test_over_http_memories_outlive_a_restart(tmp_path):
    home, port = tmp_path / "home", free_port()
    server = start_http(home, port)
    try:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            assert {t.name for t in (await client.list_tools()).tools} == ALL_TOOLS
            fact = await call(client, "remember", text="The server room is on floor 3.")
            assert "text is empty" in await refused(client, "remember", text="")
    finally:
        stop(server)
    server = start_http(home, port)
    try:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            hits = (await call(client, "recall", query="which floor is the server room"))["hits"]
            assert [(h["id"], h["status"]) for h in hits] == [(fact["id"], "healthy")]
    finally:
        stop(server)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "example.org"])
def test_http_on_an_address_beyond_loopback_is_refused_before_anything_is_made(tmp_path, host):
    """MCP over HTTP has no keys: served beyond loopback, anyone reaching it holds the tools."""
    home = tmp_path / "home"
    done = subprocess.run(
        [*CARMA, "mcp", "--home", str(home), "--transport", "http", "--host", host],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "loopback only" in done.stderr and "Traceback" not in done.stderr
    assert not home.exists()


def test_without_the_extra_the_command_says_what_to_install(tmp_path):
    blocked = (
        "import sys; sys.modules['mcp'] = None; "  # as if the SDK were not installed
        "from carma.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked, "mcp", "--home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert done.returncode == 2
    assert "pip install 'carma[mcp]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "home").exists()  # nothing was created


def test_a_message_nested_past_any_bound_leaves_the_server_answering(tmp_path):
    """Raw JSON-RPC on the server's standard input: a call whose arguments nest 200,000 levels
    deep is refused by the parser, and the next call is answered."""
    server = subprocess.Popen(
        [*CARMA, "mcp", "--home", str(tmp_path / "home"), "--embedder", "hashing"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + STARTUP_S

    def send(message: str) -> None:
        server.stdin.write(message.encode() + b"\n")
        server.stdin.flush()

    def answer_to(request_id: int) -> dict:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([server.stdout], [], [], deadline - time.monotonic())
            if not ready:
                break
            line = server.stdout.readline()
            if not line:
                pytest.fail("the server closed its output")
            message = json.loads(line)
            if message.get("id") == request_id:
                return message
        pytest.fail(f"no answer to request {request_id} within {STARTUP_S} s")

    try:
        hello = {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        }
        send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}))
        assert "result" in answer_to(1)
        send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        deep = "[" * 200_000 + "]" * 200_000
        send(
            '{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "remember", '
            f'"arguments": {{"text": "x", "metadata": {deep}}}}}}}'
        )
        call = {"name": "remember", "arguments": {"text": "still answering"}}
        send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call}))
        assert answer_to(3)["result"]["structuredContent"]["outcome"] == "added"
    finally:
        server.stdin.close()
        server.wait(timeout=30)
