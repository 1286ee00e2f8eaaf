"""The live job monitor: ``GET /ui`` (a static page, public) and ``GET /resources``.

The page and its scripts hold no data and no secret, so they are served without
auth; every request the page makes for data goes to the ordinary authenticated API
with the secret the user gives it.  ``/resources`` (authenticated) serves the
sampler's RAM/CPU/GPU history for the page's charts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources as importlib_resources

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response

from smartcolab.runtime.host.sampler import ResourceSampler
from smartcolab.shared import routes
from smartcolab.shared.errors import NotFound
from smartcolab.shared.protocol import ResourceHistory

UI_PATH = "/ui"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# The page may talk to its own origin only; images are the job outputs' data: URLs.
# Framing: only by itself, a notebook on this machine (Jupyter on localhost) and Colab,
# whose cell outputs are frames under googleusercontent.com; any other site is refused,
# so a page cannot overlay the monitor and trick a click (clickjacking).
FRAME_ANCESTORS = ("'self' http://localhost:* http://127.0.0.1:* "
                   "https://colab.research.google.com https://colab.google.com "
                   "https://*.googleusercontent.com https://*.colab.dev")
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; base-uri 'none'; form-action 'none'; "
        f"frame-ancestors {FRAME_ANCESTORS}")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _asset(name: str) -> Response:
    suffix = name[name.rfind("."):] if "." in name else ""
    if suffix not in _TYPES or "/" in name or name.startswith("."):
        raise NotFound(f"no such page asset: {name}")
    item = importlib_resources.files("smartcolab.runtime.ui").joinpath(name)
    if not item.is_file():
        raise NotFound(f"no such page asset: {name}")
    return Response(item.read_bytes(), media_type=_TYPES[suffix], headers=_HEADERS)


def get_sampler(request: Request) -> ResourceSampler:
    sampler: ResourceSampler = request.app.state.sampler
    return sampler


@asynccontextmanager
async def _sampling(app: FastAPI) -> AsyncIterator[None]:
    sampler = ResourceSampler()
    app.state.sampler = sampler
    await sampler.start()
    try:
        yield
    finally:
        await sampler.stop()


public_router = APIRouter(tags=["ui"])
router = APIRouter(tags=["ui"], lifespan=_sampling)


@public_router.get(UI_PATH, include_in_schema=False)
async def ui_page() -> Response:
    """The monitor page: static HTML that asks for the secret before fetching anything."""
    return _asset("index.html")


@public_router.get(UI_PATH + "/", include_in_schema=False)
async def ui_slash() -> Response:
    # Relative, so it also works behind a proxy that mounts the runtime under a prefix.
    return RedirectResponse("../ui", status_code=308)


@public_router.get(UI_PATH + "/{name}", include_in_schema=False)
async def ui_asset(name: str) -> Response:
    return _asset(name)


@router.get(routes.RESOURCES, response_model=ResourceHistory)
async def get_resources(
    request: Request,
    since: float = Query(0.0, ge=0, description="only samples newer than this unix time"),
) -> ResourceHistory:
    """RAM, CPU and GPU memory/utilisation sampled every few seconds over the last minutes."""
    return get_sampler(request).history(since)
