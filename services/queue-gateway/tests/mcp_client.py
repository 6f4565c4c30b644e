"""The official Python MCP client, driven by tests/mcp.rs over stdin/stdout.

Usage: mcp_client.py URL KEY. Connects over streamable HTTP with `Authorization: Bearer KEY`,
prints {"event": "ready", ...} once initialised, then runs one command per stdin line, in order:

    {"id": 1, "op": "list_tools"}
    {"id": 2, "op": "call", "tool": "create_page", "args": {...}, "progress": true}

and prints one JSON line per result ({"id", "event": "result", "result"}) and per progress
notification of a call ({"id", "event": "progress", "progress", "total", "message"}).
Exits when stdin closes. Any failure is printed as {"event": "error"} before exiting non-zero.
"""

import json
import sys
import traceback

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

# Each call is bounded; the Rust side bounds the whole run as well.
CALL_TIMEOUT_SECS = 60


def emit(message: dict) -> None:
    print(json.dumps(message), flush=True)


async def run(url: str, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    timeout = httpx2.Timeout(30, read=120)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                emit(
                    {
                        "event": "ready",
                        "protocolVersion": init.protocol_version,
                        "serverInfo": init.server_info.model_dump(mode="json"),
                        "instructions": init.instructions,
                    }
                )
                while True:
                    line = await anyio.to_thread.run_sync(sys.stdin.readline)
                    if not line:
                        return
                    await handle(session, json.loads(line))


async def handle(session: ClientSession, command: dict) -> None:
    id_ = command["id"]
    with anyio.fail_after(CALL_TIMEOUT_SECS):
        if command["op"] == "list_tools":
            tools = await session.list_tools()
            result = [tool.model_dump(mode="json", by_alias=True) for tool in tools.tools]
        elif command["op"] == "call":

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                emit(
                    {
                        "id": id_,
                        "event": "progress",
                        "progress": progress,
                        "total": total,
                        "message": message,
                    }
                )

            called = await session.call_tool(
                command["tool"],
                command.get("args", {}),
                progress_callback=on_progress if command.get("progress") else None,
            )
            result = called.model_dump(mode="json", by_alias=True, exclude_none=True)
        else:
            raise ValueError(f"unknown op {command['op']!r}")
    emit({"id": id_, "event": "result", "result": result})


def main() -> None:
    url, key = sys.argv[1], sys.argv[2]
    try:
        anyio.run(run, url, key)
    except BaseException:  # noqa: BLE001 - reported to the Rust side, which fails the test
        emit({"event": "error", "error": traceback.format_exc()})
        sys.exit(1)


if __name__ == "__main__":
    main()
