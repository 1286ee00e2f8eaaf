"""The local runtime: a daemon per user and configuration, shared by every client."""
