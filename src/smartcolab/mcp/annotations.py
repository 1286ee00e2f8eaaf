"""The tool annotations, defined once: what a tool does to the runtime and to this machine.

``open_world_hint`` is False for tools that only touch this machine (the registry, local
checkpoints). Hints equal to the MCP defaults (destructive true, idempotent false, open
world true; destructive means nothing on a read-only tool) are left out: every
definition costs context in every conversation. ``read_only_hint`` is always given.
"""

from __future__ import annotations

from mcp.types import ToolAnnotations

# Runs code or frees memory on the runtime: changes its state, not safe to repeat.
RUNS = ToolAnnotations(read_only_hint=False)
# Reads from the runtime only.
READS_REMOTE = ToolAnnotations(read_only_hint=True, idempotent_hint=True)
# Replaces or stops something on the runtime (or the local file of the same name);
# repeating it changes nothing more.
REPLACES_REMOTE = ToolAnnotations(read_only_hint=False, idempotent_hint=True)
# Adds something (a snapshot, a downloaded file, a runtime entry) without destroying.
ADDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True)
# Reads this machine's state only.
READS_LOCAL = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
# Deletes something on this machine.
DELETES_LOCAL = ToolAnnotations(read_only_hint=False, idempotent_hint=True,
                                open_world_hint=False)
