"""A hostile runtime: the runtime API answered with crafted ids, names, sizes, encodings, archives.

A small Starlette app served by uvicorn on a loopback port (bound to port 0 first,
so no port race).  It accepts any credentials and answers what its :class:`Plan`
says; every request is recorded.  The bridge under test must treat every answer
as untrusted: nothing written outside the save directory, no more bytes than
stated, a clear error.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# The smallest valid PNG (1x1), so the bridge has an image to spill to disk.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


@dataclass
class HostileFile:
    """What ``/files/stat`` states and what ``/files/content`` sends."""

    body: bytes
    stated_size: int | None = None  # default: len(body)
    encoding: str | None = None  # a Content-Encoding header, sent whatever was asked
    gzip_body: bool = False  # send the body gzip-compressed (with ``encoding``)
    etag: str = '"v1"'
    content_etag: str | None = None  # what /files/content says (default: ``etag``)

    def stat(self, path: str) -> dict[str, Any]:
        return {"path": path, "root": "root", "type": "file",
                "size": len(self.body) if self.stated_size is None else self.stated_size,
                "mtime": 0.0, "sha256": hashlib.sha256(self.body).hexdigest(),
                "etag": self.etag}


@dataclass
class Plan:
    """The crafted answers; tests change it between calls."""

    job_id: str | None = None  # answer every job call with this id instead of the asked one
    session: str | None = None  # ... and this session name
    images: int = 3
    session_names: list[str] = field(default_factory=lambda: ["main"])
    files: dict[str, HostileFile] = field(default_factory=dict)
    archives: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


def tar_of(members: list[tuple[str, bytes | None]], *, compress: bool = True) -> bytes:
    """A tar (gzip by default) of ``(name, data)``; ``None`` data makes a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if compress else "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _job(plan: Plan, asked: str, code: str = "") -> dict[str, Any]:
    outputs: list[dict[str, Any]] = [
        {"type": "display_data", "image_mime": "image/png",
         "image_base64": base64.b64encode(PNG_1X1).decode()} for _ in range(plan.images)]
    if outputs:  # one format that is neither text nor image: saved to a file too
        outputs[0]["attachments"] = [{"mime": "text/html", "data": "<b>x</b>", "size": 8}]
    return {"job_id": plan.job_id or asked, "session": plan.session or "main",
            "status": "succeeded", "code": code or "x", "timeout": 120.0,
            "created_at": time.time(), "finished_at": time.time(), "duration_s": 0.01,
            "epoch": "e1", "result": {"stdout": {"text": "hi\n", "total_chars": 3},
                                      "outputs": outputs}}


def build_app(plan: Plan) -> Starlette:
    async def record(request: Request) -> None:
        plan.requests.append(f"{request.method} {request.url.path}?{request.url.query}")

    async def health(request: Request) -> Response:
        await record(request)
        return JSONResponse({"status": "ok", "version": "0", "epoch": "e1"})

    async def submit(request: Request) -> Response:
        await record(request)
        body = await request.json()
        return JSONResponse(_job(plan, body["job_id"], body.get("code", "")))

    async def get_job(request: Request) -> Response:
        await record(request)
        return JSONResponse(_job(plan, request.path_params["job_id"]))

    async def sessions(request: Request) -> Response:
        await record(request)
        now = time.time()
        return JSONResponse({"sessions": [
            {"name": n, "epoch": "e1", "status": "idle", "queued": 0, "started_at": now}
            for n in plan.session_names]})

    async def stat(request: Request) -> Response:
        await record(request)
        path = request.query_params["path"]
        if path in plan.archives:
            return JSONResponse({"path": path, "root": "root", "type": "dir", "size": 0,
                                 "mtime": 0.0})
        f = plan.files.get(path)
        if f is None:
            return JSONResponse({"error": {"code": "file_not_found", "message": "no",
                                           "details": {}}}, status_code=404)
        return JSONResponse(f.stat(path))

    async def content(request: Request) -> Response:
        await record(request)
        f = plan.files[request.query_params["path"]]
        body = gzip.compress(f.body) if f.gzip_body else f.body
        headers = {"ETag": f.content_etag or f.etag, "Accept-Ranges": "bytes"}
        if f.encoding:
            headers["Content-Encoding"] = f.encoding

        async def chunks() -> Any:
            for i in range(0, len(body), 64 * 1024):
                yield body[i:i + 64 * 1024]

        return StreamingResponse(chunks(), headers=headers,
                                 media_type="application/octet-stream")

    async def archive(request: Request) -> Response:
        await record(request)
        return Response(plan.archives[request.query_params["path"]],
                        media_type="application/x-tar")

    async def jupyter_model(request: Request) -> Response:
        """A Jupyter Server's contents API: the stated size and sha256 of a planted file."""
        await record(request)
        path = request.path_params["path"]
        f = plan.files[path]
        stated = f.stat(path)
        return JSONResponse({"name": path.rsplit("/", 1)[-1], "path": path, "type": "file",
                             "size": stated["size"], "last_modified": "2026-01-01T00:00:00Z",
                             "hash": stated["sha256"], "hash_algorithm": "sha256"})

    async def jupyter_file(request: Request) -> Response:
        await record(request)
        f = plan.files[request.path_params["path"]]
        headers = {"Content-Encoding": f.encoding} if f.encoding else {}
        return Response(gzip.compress(f.body) if f.gzip_body else f.body, headers=headers,
                        media_type="application/octet-stream")

    return Starlette(routes=[
        Route("/health", health), Route("/jobs", submit, methods=["POST"]),
        Route("/jobs/{job_id}", get_job), Route("/jobs/{job_id}/cancel", get_job,
                                                 methods=["POST"]),
        Route("/sessions", sessions), Route("/files/stat", stat),
        Route("/files/content", content), Route("/files/archive", archive),
        # A Jupyter Server's routes, after ours (its /files/PATH would swallow them).
        Route("/api/contents/{path:path}", jupyter_model),
        Route("/files/{path:path}", jupyter_file)])


@contextmanager
def serve_hostile(plan: Plan) -> Iterator[str]:
    """Serve :func:`build_app` on 127.0.0.1 (a port of its own); yields the URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(plan), log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the hostile runtime did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
