"""Everything that talks to a runtime, for the MCP server and the CLI.

One backend interface (``backend``) with one folder per runtime kind: ``http`` (our
runtime server) and ``jupyter`` (a Jupyter Server).
"""
