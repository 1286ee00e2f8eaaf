"""The colab-tab runtime kind: the user's open Colab notebook, reached through the page.

The Colab page connects out to a relay on 127.0.0.1 over a WebSocket and serves MCP on
it (``wsframe``); ``page`` is the typed, validating wrapper of its seven tools.
"""
