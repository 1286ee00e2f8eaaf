"""The wire module is the one source of paths: every route the runtime serves is named in
shared/routes.py and every name there is served (no kernel starts: the app is only built)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartcolab.runtime.api.app import create_app
from smartcolab.runtime.config import build_config
from smartcolab.shared import routes


# FastAPI warns about the GET/HEAD route sharing one operation id; not ours to judge here.
@pytest.mark.filterwarnings("ignore:Duplicate Operation ID")
def test_every_route_is_named_in_the_wire_module(tmp_path: Path) -> None:
    app = create_app(build_config(roots=[tmp_path]))
    served = set(app.openapi()["paths"])  # the API; the /ui pages stay out of the schema
    named = {v for k, v in vars(routes).items() if k.isupper() and isinstance(v, str)}
    assert served == named


def test_fill_quotes_each_value_as_one_segment() -> None:
    assert routes.fill(routes.JOB_OUTPUT, job_id="j1") == "/jobs/j1/output"
    assert routes.fill(routes.SESSION, name="a/b c") == "/sessions/a%2Fb%20c"
