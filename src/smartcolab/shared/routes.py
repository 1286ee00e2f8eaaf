"""The runtime's endpoint paths: its routers declare them, the HTTP client calls them.

Templates use FastAPI's ``{name}`` placeholders, so the runtime passes them to its
route decorators as they are and the client fills them with ``fill``.  Headers and
bodies of the wire protocol are in ``protocol``.
"""

from __future__ import annotations

from urllib.parse import quote

# Public: no secret needed.
HEALTH = "/health"
# System.
PROBE = "/probe"
SHUTDOWN = "/shutdown"
AUTH_ROTATE = "/auth/rotate"
RESOURCES = "/resources"
# Jobs.
JOBS = "/jobs"
JOB = "/jobs/{job_id}"
JOB_CANCEL = "/jobs/{job_id}/cancel"
JOB_OUTPUT = "/jobs/{job_id}/output"
JOB_FILE = "/jobs/{job_id}/files/{name}"  # an output kept in the job's folder
# Sessions and their saved variables.
SESSIONS = "/sessions"
SESSION = "/sessions/{name}"
SESSION_RESTART = "/sessions/{name}/restart"
SESSION_INTERRUPT = "/sessions/{name}/interrupt"
SESSION_VARIABLES = "/sessions/{name}/variables"
SESSION_CLEANUP = "/sessions/{name}/cleanup"
SESSION_SAVE = "/sessions/{name}/save"
SESSION_RESTORE = "/sessions/{name}/restore"
SNAPSHOTS = "/snapshots"
# Files: the path of a file is a query parameter, never part of the URL path.
FILES = "/files"
FILES_STAT = "/files/stat"
FILES_CONTENT = "/files/content"
FILES_ARCHIVE = "/files/archive"
# Uploads in parts (parallel, resumable): create, send parts, status, commit, abort.
FILES_UPLOADS = "/files/uploads"
FILES_UPLOAD = "/files/uploads/{upload_id}"
FILES_UPLOAD_COMMIT = "/files/uploads/{upload_id}/commit"
# One fixed path (id and offset in the signed query), so the gate and the limits name it.
FILES_UPLOAD_PART = "/files/upload-part"


def fill(template: str, **values: str) -> str:
    """A template with its placeholders filled, each value quoted as one path segment."""
    return template.format(**{k: quote(v, safe="") for k, v in values.items()})
