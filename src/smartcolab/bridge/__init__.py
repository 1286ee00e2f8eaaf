"""The bridge: the local MCP server and the HTTP client that drives runtimes."""
