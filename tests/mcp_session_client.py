"""An independent MCP client for tests/mcp_sessions.rs: the official MCP Python SDK's
Streamable HTTP client against the daemon's /v1/mcp/{integration}.

    mcp_session_client.py URL TOKEN

Initializes, lists the tools, asks the seeded world a few questions, and closes the session
(the SDK sends DELETE). Prints one JSON document: what the server said and answered.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

QUESTIONS = [
    ("alarms_list", {"state": "ALARM"}),
    ("ecs_services", {"cluster": "main"}),
    ("elasticache_replication_group", {"id": "cell-a-redis"}),
    ("whoami", {}),
]


async def main(url: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with streamablehttp_client(url, headers=headers) as (read, write, get_session_id):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            answers = {}
            for name, arguments in QUESTIONS:
                result = await session.call_tool(name, arguments)
                answers[name] = {
                    "is_error": bool(result.isError),
                    "text": result.content[0].text if result.content else "",
                }
            summary = {
                "session_id": get_session_id(),
                "server_name": init.serverInfo.name,
                "server_version": init.serverInfo.version,
                "protocol_version": init.protocolVersion,
                "instructions": init.instructions or "",
                "tools": sorted(tool.name for tool in tools.tools),
                "read_only": all(
                    tool.annotations is not None and tool.annotations.readOnlyHint
                    for tool in tools.tools
                ),
                "answers": answers,
            }
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
