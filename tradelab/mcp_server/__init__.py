"""The MCP server: tradelab's analytics as tools for AI assistants (official ``mcp`` SDK).

:mod:`.server` builds the :class:`~mcp.server.mcpserver.MCPServer`, registers the tools and
runs it over stdio or streamable HTTP; :mod:`.presentation` turns API results into the
structured models and one-paragraph texts the tools return.
"""

from __future__ import annotations

from tradelab.mcp_server.server import DEFAULT_HTTP_PATH, create_server, run_http, run_stdio

__all__ = ["DEFAULT_HTTP_PATH", "create_server", "run_http", "run_stdio"]
