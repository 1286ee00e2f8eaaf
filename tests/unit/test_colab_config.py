"""The colab kind's configuration: runtimes-file entries, settings, the registry's factory,
and the release capability other kinds lack.  No network."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartcolab.cli.commands.runtimes import add_runtime
from smartcolab.client.backend import Capability
from smartcolab.client.colab.backend import ColabBackend
from smartcolab.client.colab.service import COLAB_DOMAIN, colab_settings
from smartcolab.client.http.backend import HttpBackend
from smartcolab.client.registry import default_factories, load_runtimes_file
from smartcolab.shared.errors import InvalidInput, Unsupported

pytestmark = pytest.mark.anyio


def test_a_colab_entry_needs_no_url_and_keeps_its_options(tmp_path: Path) -> None:
    path = tmp_path / "runtimes.toml"
    path.write_text('[runtimes.gpu]\nkind = "colab"\naccelerator = "t4"\n'
                    'idle_release_minutes = 5\npython = "/opt/py312/bin/python"\n')
    (spec,), _ = load_runtimes_file(path, {})
    assert (spec.kind, spec.url) == ("colab", COLAB_DOMAIN)
    assert dict(spec.options) == {"accelerator": "t4", "idle_release_minutes": 5,
                                  "python": "/opt/py312/bin/python"}
    backend = default_factories()["colab"](spec)
    assert isinstance(backend, ColabBackend)
    assert backend.settings.accelerator == "T4" and backend.settings.idle_release_s == 300
    assert backend.settings.python == "/opt/py312/bin/python"
    assert backend.supports(Capability.RELEASE) and backend.supports(Capability.FILES)


@pytest.mark.parametrize(("options", "message"), [
    ({"accelerator": "K80"}, "accelerator 'K80' is unknown"),
    ({"acclerator": "T4"}, "does not take acclerator"),
    ({"idle_release_minutes": -1}, "idle_release_minutes >= 0"),
    ({"keepalive_minutes": "soon"}, "must be numbers"),
])
def test_bad_colab_options_are_refused_clearly(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        colab_settings(COLAB_DOMAIN, options)


def test_cpu_is_the_default_shape_and_none_means_cpu() -> None:
    assert colab_settings(COLAB_DOMAIN, {}).accelerator == "CPU"
    assert colab_settings(COLAB_DOMAIN, {"accelerator": "none"}).accelerator == "CPU"


def test_the_cli_writes_a_colab_entry_the_bridge_reads(tmp_path: Path) -> None:
    path = tmp_path / "runtimes.toml"
    add_runtime(path, "gpu", COLAB_DOMAIN, secret=None, secret_env=None, description="",
                make_default=True, replace=False, kind="colab",
                options={"accelerator": "L4", "idle_release_minutes": 0.0})
    (spec,), default = load_runtimes_file(path, {})
    assert default == "gpu" and spec.kind == "colab" and spec.options["accelerator"] == "L4"
    with pytest.raises(InvalidInput, match="kind 'colabb' is unknown"):
        add_runtime(path, "x", COLAB_DOMAIN, secret=None, secret_env=None, description="",
                    make_default=False, replace=False, kind="colabb")
    assert "colabb" not in path.read_text()


async def test_other_kinds_say_there_is_nothing_to_release() -> None:
    backend = HttpBackend("http://127.0.0.1:9", "s", name="vm")
    try:
        assert not backend.supports(Capability.RELEASE)
        with pytest.raises(Unsupported, match="nothing to release"):
            await backend.release()
    finally:
        await backend.aclose()
