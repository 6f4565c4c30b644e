"""The official Python MCP client driving one sandbox session, for tests/mcp.rs.

Usage: mcp_client.py URL KEY. Connects to the session's MCP endpoint over streamable HTTP with
`Authorization: Bearer KEY`, runs a fixed scenario and prints one JSON object with what it saw:

    {"protocolVersion", "serverInfo", "instructions",
     "tools": [sorted names], "schemas": {name: inputSchema},
     "write", "exec", "read", "badRead", "badTimeout", "checkpoint", "checkpoints"}

where each call is its CallToolResult as JSON (`content`, `structuredContent`, `isError`).
Any failure goes to stderr with a non-zero exit; the Rust side shows it.
"""

import json
import sys

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

# Each call is bounded; the Rust side bounds the whole run as well.
CALL_TIMEOUT_SECS = 60


async def call(session: ClientSession, tool: str, args: dict) -> dict:
    with anyio.fail_after(CALL_TIMEOUT_SECS):
        result = await session.call_tool(tool, args)
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


async def run(url: str, key: str) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    timeout = httpx2.Timeout(30, read=120)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                with anyio.fail_after(CALL_TIMEOUT_SECS):
                    init = await session.initialize()
                    listed = await session.list_tools()
                tools = [tool.model_dump(mode="json", by_alias=True) for tool in listed.tools]
                seen = {
                    "protocolVersion": init.protocol_version,
                    "serverInfo": init.server_info.model_dump(mode="json"),
                    "instructions": init.instructions,
                    "tools": sorted(tool["name"] for tool in tools),
                    "schemas": {tool["name"]: tool["inputSchema"] for tool in tools},
                }
                seen["write"] = await call(
                    session,
                    "fs_write",
                    {"path": "app/hello.sh", "content": 'echo "hello from $(pwd)"'},
                )
                seen["exec"] = await call(session, "exec", {"cmd": "sh app/hello.sh && ls app"})
                seen["read"] = await call(session, "fs_read", {"path": "app/hello.sh"})
                seen["badRead"] = await call(session, "fs_read", {"path": "../etc/passwd"})
                seen["badTimeout"] = await call(
                    session, "exec", {"cmd": "true", "timeoutSec": 500}
                )
                seen["checkpoint"] = await call(session, "checkpoint", {"message": "from mcp"})
                seen["checkpoints"] = await call(session, "list_checkpoints", {})
                return seen


def main() -> None:
    url, key = sys.argv[1], sys.argv[2]
    seen = anyio.run(run, url, key)
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
