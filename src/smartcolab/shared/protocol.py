"""Wire models and wire rules shared by the runtime server and its clients.

The runtime (``smartcolab.runtime``) and its clients (``smartcolab.client``, used by
``smartcolab.mcp`` and ``smartcolab.cli``) never import each other; everything they
must agree on lives here: request and response models, header names, the API
version, the HMAC canonical string, limits that both sides check.  Endpoint paths
are in ``routes``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool
from pydantic.config import JsonDict

# The wire protocol's version: the runtime sends it on every response (H_API_VERSION) and
# the client refuses to go on with a runtime that speaks another one, with a clear error,
# instead of failing later on a missing field.  Bump it on any incompatible change.
API_VERSION = "1"

# ---------------------------------------------------------------- headers
H_TIMESTAMP = "X-SC-Timestamp"
H_NONCE = "X-SC-Nonce"
H_SIGNATURE = "X-SC-Signature"
H_CONTENT_SHA256 = "X-SC-Content-SHA256"
H_EPOCH = "X-SC-Epoch"
H_API_VERSION = "X-SC-API-Version"
# The size of a file before gzip, on a compressed download (the body's length is the wire size).
H_IDENTITY_LENGTH = "X-SC-Identity-Length"
# ngrok's free plan serves an interstitial page to browser-like clients without it.
H_NGROK_SKIP = "ngrok-skip-browser-warning"

SIGNATURE_WINDOW_S = 300.0
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# ---------------------------------------------------------------- limits
MAX_WAIT_S = 55.0  # below Cloudflare's ~100 s cut and Claude Desktop's ~60 s
# How long an idle keep-alive connection stays open.  uvicorn's and httpx's 5 s meant a model
# calling a tool after a pause paid a new TCP (and TLS) handshake: two or three round trips
# through a tunnel instead of one.  The client lets go first, so it never sends a request
# into a connection the runtime is closing at the same moment.
KEEPALIVE_RUNTIME_S = 75.0
KEEPALIVE_CLIENT_S = 60.0
QUICK_TIMEOUT_S = 120.0
LONG_TIMEOUT_S = 600.0
MAX_TIMEOUT_S = 7 * 24 * 3600.0
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
# A Python identifier (what str.isidentifier accepts, near enough for a schema).
VARIABLE_NAME_PATTERN = r"^[^\W\d]\w*$"
MAX_CODE_CHARS = 1_000_000

JobStatus = Literal["queued", "running", "succeeded", "failed", "timed_out", "cancelled", "lost"]
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"succeeded", "failed", "timed_out", "cancelled", "lost"}
)


def canonical_request(method: str, raw_path: str, raw_query: str, content_sha256: str,
                      timestamp: str, nonce: str) -> bytes:
    """The exact bytes an HMAC signature covers.

    ``raw_path`` and ``raw_query`` are as sent on the wire (percent-encoded, no
    ``?``), so neither side re-encodes anything.  ``content_sha256`` is the hex
    digest of the body, declared in ``X-SC-Content-SHA256``; a streamed upload
    declares the digest of the file and the server checks it once streamed.
    """
    return "\n".join(
        [method.upper(), raw_path, raw_query, content_sha256.lower(), timestamp, nonce]
    ).encode("utf-8")


def sign(secret: str, canonical: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), canonical, hashlib.sha256).hexdigest()


# Stated in the schema, checked by the runtime (422 naming the bad names), not here: a
# bridge must get the runtime's clear message, not a local validation error.
VARIABLE_NAMES_SCHEMA: JsonDict = {"items": {"type": "string", "pattern": VARIABLE_NAME_PATTERN,
                                             "maxLength": 255}}


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """Responses ignore unknown fields so an older client can read a newer runtime."""

    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------- errors
class ErrorDetail(Open):
    code: str
    message: str
    details: dict[str, object] = Field(default_factory=dict)


class ErrorResponse(Open):
    error: ErrorDetail


class SecretRotated(Open):
    """The new secret, returned once by ``POST /auth/rotate``; the old one stops working."""

    secret: str
    rotated_at: float


# ---------------------------------------------------------------- health
class Health(Open):
    status: Literal["ok", "shutting_down"]
    version: str
    epoch: str


# ---------------------------------------------------------------- jobs
class JobSubmit(Model):
    job_id: str = Field(pattern=JOB_ID_PATTERN, description="client-chosen idempotency key")
    code: str = Field(min_length=1, max_length=MAX_CODE_CHARS)
    session: str = Field(default="main", pattern=NAME_PATTERN)
    timeout: float | None = Field(
        default=QUICK_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S,
        description="seconds before the kernel is interrupted; null = no limit",
    )
    force: StrictBool = Field(default=False, description="run even when available RAM is low")
    client: str | None = Field(default=None, max_length=200, description="free-form submitter label")
    if_idle: StrictBool = Field(default=False, description=(
        "refuse with 409 session_busy (naming the running job) instead of queueing when the "
        "session is running or has queued jobs"))


class TextBlock(Open):
    """A text capped head + tail; ``total_chars`` is the size before capping."""

    text: str = ""
    total_chars: int = 0
    truncated: bool = False


class OutputAttachment(Open):
    """A display format not shown as text or image (SVG, PDF, HTML widgets ...)."""

    mime: str
    data: str | None = Field(default=None, description="the data as the kernel sent it; "
                             "None when it was over the size cap (then only on the runtime)")
    size: int = 0
    kept_as: str | None = Field(default=None, description="its file in the job's folder")


class RichOutput(Open):
    type: Literal["execute_result", "display_data"]
    text: str | None = None
    text_mime: str | None = Field(default=None, description="the format the text came from")
    image_mime: str | None = None
    image_base64: str | None = None
    image_bytes: int | None = None
    image_kept_as: str | None = Field(default=None, description="the image's file in the "
                                      "job's folder (GET /jobs/{id}/files/{name})")
    attachments: list[OutputAttachment] = Field(default_factory=list)
    execution_count: int | None = None


class ErrorInfo(Open):
    ename: str
    evalue: str
    traceback: list[str] = Field(default_factory=list)


class Resources(Open):
    ram_total_bytes: int
    ram_available_before: int
    ram_available_after: int
    ram_percent_after: float
    gpu_memory_used_before: list[int] | None = None
    gpu_memory_used_after: list[int] | None = None
    warnings: list[str] = Field(default_factory=list)


OutputKind = Literal["stdout", "stderr", "display", "result", "error"]


class OutputItem(Open):
    """One piece of a job's output, in the order output happened (``shared/output/flow.py``)."""

    kind: OutputKind
    text: str = ""
    at: int = Field(default=0, description="cursor position where this piece starts")
    end: int = Field(default=0, description="cursor position after it")
    output: int | None = Field(default=None, description="index in the result's outputs")
    after_end: bool = Field(default=False, description=(
        "printed after the job had ended, by a thread it started"))


class JobResult(Open):
    stdout: TextBlock = Field(default_factory=TextBlock)
    stderr: TextBlock = Field(default_factory=TextBlock)
    outputs: list[RichOutput] = Field(default_factory=list)
    error: ErrorInfo | None = None
    execution_count: int | None = None
    resources: Resources | None = None
    message: str | None = None
    state_lost: bool = False
    flow: list[OutputItem] = Field(default_factory=list, description=(
        "stdout, stderr, displays and the error in the order they happened (capped head + "
        "tail: a gap between one item's end and the next one's at was left out)"))


class JobView(Open):
    job_id: str
    session: str
    status: JobStatus
    code: str
    timeout: float | None
    client: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    epoch: str = Field(description="the session's epoch when this view was made")
    output: str = Field(default="", description="text output since the cursor, capped")
    cursor: int = Field(default=0, description="pass as since= to get only newer output")
    output_bytes: int = Field(default=0, description="size of the full output so far")
    output_truncated: bool = False
    result: JobResult | None = None


class JobList(Open):
    jobs: list[JobView]


class OutputPage(Open):
    job_id: str
    offset: int
    next_offset: int
    total_bytes: int
    text: str
    complete: bool = Field(description="true when the job is finished and the page reaches the end")


# ---------------------------------------------------------------- sessions
class SessionCreate(Model):
    name: str = Field(pattern=NAME_PATTERN)


class SessionView(Open):
    name: str
    epoch: str
    status: Literal["starting", "idle", "busy", "restarting", "dead"]
    queued: int
    running_job: str | None = None
    kernel_pid: int | None = None
    started_at: float
    execution_count: int = 0


class SessionList(Open):
    sessions: list[SessionView]


class VariableInfo(Open):
    name: str
    type: str
    shape: list[int] | None = None
    length: int | None = None
    dtype: str | None = None
    size_bytes: int | None = None
    preview: str | None = None


class VariableList(Open):
    session: str
    epoch: str
    variables: list[VariableInfo]


class CleanupRequest(Model):
    reset: StrictBool = Field(default=False, description="delete every user variable")
    names: list[str] = Field(default_factory=list, max_length=1000,
                             json_schema_extra=VARIABLE_NAMES_SCHEMA)


class CleanupReport(Open):
    session: str
    epoch: str
    collected_objects: int
    rss_before: int | None = None
    rss_after: int | None = None
    freed_bytes: int | None = None
    gpu_freed_bytes: int | None = None
    deleted: list[str] = Field(default_factory=list)
    closed_figures: int = 0
    notes: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------- persistence
class SaveRequest(Model):
    names: list[str] = Field(default_factory=list, max_length=1000,
                             json_schema_extra=VARIABLE_NAMES_SCHEMA,
                             description="variables to save; empty = every user variable")
    snapshot: str | None = Field(default=None, pattern=NAME_PATTERN,
                                 description="snapshot name; default: the session's name")


class RestoreRequest(Model):
    snapshot: str | None = Field(default=None, pattern=NAME_PATTERN,
                                 description="snapshot name; default: the session's name")
    names: list[str] = Field(default_factory=list, max_length=1000,
                             json_schema_extra=VARIABLE_NAMES_SCHEMA,
                             description="variables to restore; empty = all in the snapshot")


class SavedVariable(Open):
    name: str
    type: str
    size_bytes: int
    file: str


class VariableProblem(Open):
    """A variable that was not saved or restored, and why (never fatal to the others)."""

    name: str
    type: str | None = None
    error: str


class PersistManifest(Open):
    """What one snapshot holds; written as manifest.json next to the pickles."""

    format: int = 1
    snapshot: str
    session: str
    epoch: str
    saved_at: float
    pickler: str
    python: str
    directory: str
    variables: list[SavedVariable] = Field(default_factory=list)
    failed: list[VariableProblem] = Field(default_factory=list)
    skipped: list[VariableProblem] = Field(default_factory=list)
    total_bytes: int = 0


class RestoreReport(Open):
    snapshot: str
    session: str
    epoch: str = Field(description="the session's epoch after the restore")
    saved_at: float
    saved_epoch: str
    restored: list[str] = Field(default_factory=list)
    failed: list[VariableProblem] = Field(default_factory=list)


class SnapshotList(Open):
    directory: str
    snapshots: list[PersistManifest]


# ---------------------------------------------------------------- probe
class GpuInfo(Open):
    index: int
    name: str
    memory_total_mb: int
    memory_used_mb: int
    utilization_pct: float | None = None


class Probe(Open):
    platform: Literal["colab", "kaggle", "docker", "vm", "local"]
    accelerator: str
    python: str
    cpu_count: int
    load_avg: list[float]
    ram_total_bytes: int
    ram_available_bytes: int
    disk_root: str
    disk_total_bytes: int
    disk_free_bytes: int
    gpus: list[GpuInfo]
    packages: dict[str, str]
    machine_uptime_s: float
    server_uptime_s: float
    session_time_left_s: float | None = None
    epoch: str
    version: str
    notes: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------- files
class FileEntry(Open):
    name: str
    path: str = Field(description="relative to its root")
    root: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    mtime: float


class FileList(Open):
    root: str
    path: str
    entries: list[FileEntry]
    next_cursor: str | None = None
    total: int


class FileStat(Open):
    path: str
    root: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    mtime: float
    sha256: str | None = None
    etag: str | None = Field(default=None, description="the validator /files/content sends")


class UploadResult(Open):
    path: str
    size: int
    sha256: str
    overwritten: bool


SHA256_PATTERN = r"^[0-9a-f]{64}$"
UPLOAD_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"


class UploadCreate(Model):
    """Start an upload in parts: the whole file's size up front, its sha256 here or at commit."""

    path: str = Field(min_length=1, max_length=4096)
    size: int = Field(ge=0)
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN,
                               description="of the whole file, lowercase hex; if left out "
                                           "here, it must come with the commit")
    overwrite: StrictBool = False
    part_size: int | None = Field(default=None, gt=0, description="asked for; the runtime "
                                  "clamps it to its limits and states the one it chose")


class UploadSession(Open):
    """An upload in parts: part ``n`` is bytes ``[n * part_size, min(size, (n+1) * part_size))``."""

    upload_id: str
    path: str
    size: int
    sha256: str | None
    part_size: int
    parts: int
    received: list[int]
    expires_in_s: float


class UploadCommit(Model):
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN,
                               description="of the whole file, if not stated at creation "
                                           "(the client hashed it while the parts went)")


class DeleteResult(Open):
    path: str
    deleted: bool


# ---------------------------------------------------------------- resource history (the /ui page)
class GpuSample(Open):
    index: int
    memory_used_mb: int
    memory_total_mb: int
    utilization_pct: float | None = None


class ResourceSample(Open):
    t: float = Field(description="unix time of the sample")
    cpu_percent: float = Field(description="all cores together, 0-100")
    ram_used_bytes: int
    ram_total_bytes: int
    gpus: list[GpuSample] = Field(default_factory=list)


class ResourceHistory(Open):
    interval_s: float = Field(description="seconds between samples")
    window_s: float = Field(description="how far back samples are kept")
    gpu_names: list[str] = Field(default_factory=list)
    samples: list[ResourceSample] = Field(description="oldest first, newer than since=")
