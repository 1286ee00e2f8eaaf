"""The MCP server (the bridge): lifespan, results, tools, chunked operations.
"""
