"""Everything that talks to a runtime, for the MCP server and the CLI.

One backend interface (``backend``) with one folder per runtime kind: ``http`` (our
runtime server), ``jupyter`` (a Jupyter Server), ``colab``, ``colabtab`` and ``local``;
``transfer`` holds the resumable download that ``http`` and ``jupyter`` share.
"""
