"""How MCP messages reach the server: ``stdio`` (a client spawns the bridge; ours, without a
thread hop per message) and ``http`` (Streamable HTTP behind our guard, for clients that
cannot spawn it).  ``mcp/server.py`` serves either."""
