"""Configuration once: one RuntimeConfig builder, and CLI option defaults that are the
config's own defaults (a literal typed twice would drift)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from smartcolab.cli import app as cli
from smartcolab.mcp.settings import DEFAULT_WAIT_BUDGET_S, BridgeSettings
from smartcolab.runtime.config import (
    DEFAULT_TRUSTED_PROXIES,
    KIB,
    MIB,
    STATE_SUBDIR,
    RuntimeConfig,
    build_config,
)
from smartcolab.runtime.host.platform import working_dir

# serve option -> (RuntimeConfig field, unit the option is given in)
SERVE_DEFAULTS = {
    "host": ("host", 1), "port": ("port", 1), "kill_grace": ("kill_grace_s", 1),
    "min_free_ram_mb": ("min_free_ram_bytes", MIB),
    "response_text_kb": ("response_text_bytes", KIB),
    "rate_limit": ("rate_limit_per_s", 1), "rate_burst": ("rate_burst", 1),
    "lockout_failures": ("lockout_failures", 1), "lockout_seconds": ("lockout_s", 1),
    "max_body_kb": ("max_body_bytes", KIB), "max_header_kb": ("max_header_bytes", KIB),
    "max_query_kb": ("max_query_bytes", KIB), "max_sessions": ("max_sessions", 1),
    "max_queued": ("max_queued_per_session", 1),
}
MCP_DEFAULTS = {
    "wait_budget": "wait_budget_s", "quick_timeout": "quick_timeout_s",
    "long_timeout": "long_timeout_s", "max_chars": "max_result_chars", "max_images": "max_images",
}


def defaults(command: object) -> dict[str, object]:
    return {name: p.default for name, p in inspect.signature(command).parameters.items()}  # type: ignore[arg-type]


def test_serve_option_defaults_are_the_config_defaults() -> None:
    options, config = defaults(cli.serve), RuntimeConfig()
    for option, (field, unit) in SERVE_DEFAULTS.items():
        assert options[option] * unit == getattr(config, field), option  # type: ignore[operator]


def test_mcp_option_defaults_are_the_bridge_defaults(tmp_path: Path) -> None:
    options, settings = defaults(cli.mcp), BridgeSettings(save_dir=tmp_path, checkpoint_dir=tmp_path)
    for option, field in MCP_DEFAULTS.items():
        assert options[option] == getattr(settings, field), option


def test_one_config_builder_resolves_paths_and_defaults(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path.resolve()
    monkeypatch.chdir(base)
    monkeypatch.setenv("HOME", str(base / "home"))
    config = build_config(roots=["~/data", "rel"], persist_dir="~/saved", secret="s",
                          trusted_proxies=["10.0.0.0/8"], max_sessions=3)
    assert config.roots == [base / "home" / "data", base / "rel"]
    assert config.state_dir == base / "home" / "data" / STATE_SUBDIR
    assert config.persist_root == base / "home" / "saved"
    assert (config.secret, config.trusted_proxies, config.max_sessions) == (
        "s", ["10.0.0.0/8"], 3)
    plain = build_config(secret=None, trusted_proxies=None)
    assert plain.roots == [working_dir()] and plain.secret and plain.secret != "s"
    assert plain.trusted_proxies == list(DEFAULT_TRUSTED_PROXIES) == []  # only the tunnel agent, by pid


def test_the_default_wait_budget_answers_within_a_clients_patience() -> None:
    # Claude Desktop gives up on a tool call after about 60 s; a call answers within its
    # budget plus a few seconds of work (the scripted session checks 55 s end to end with
    # a shorter budget, tests/e2e/test_session_script.py).
    assert DEFAULT_WAIT_BUDGET_S + 5 <= 55
