"""The tool annotations, defined once: what a tool does to the runtime and to this machine.

``open_world_hint`` is True for tools that reach a runtime, False for those that only
touch this machine (the registry, local checkpoints).
"""

from __future__ import annotations

from mcp.types import ToolAnnotations

# Runs code or frees memory on the runtime: changes its state, not safe to repeat.
RUNS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False,
                       open_world_hint=True)
# Reads from the runtime only.
READS_REMOTE = ToolAnnotations(read_only_hint=True, destructive_hint=False,
                               idempotent_hint=True, open_world_hint=True)
# Replaces or stops something on the runtime (or the local file of the same name);
# repeating it changes nothing more.
REPLACES_REMOTE = ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                  idempotent_hint=True, open_world_hint=True)
# Adds something (a snapshot, a downloaded file, a runtime entry) without destroying.
ADDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                       open_world_hint=True)
# Reads this machine's state only.
READS_LOCAL = ToolAnnotations(read_only_hint=True, destructive_hint=False,
                              idempotent_hint=True, open_world_hint=False)
# Deletes something on this machine.
DELETES_LOCAL = ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                idempotent_hint=True, open_world_hint=False)
