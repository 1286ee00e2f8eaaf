"""CLI bodies for ``probe`` and ``runtimes list|add|remove``.

Secrets are never taken from argv (any local user reads it in ``ps``): ``runtimes add``
stores one read from a hidden prompt, a file or stdin, or names an environment variable.
The runtimes file is the bridge's format (``client/registry.py`` reads it with
``load_runtimes_file``); this module only adds the writing side: the file is read
whole, changed, and replaced atomically (temp file, fsync, rename) with mode 0600
because it may hold secrets.  Keys it does not know are kept.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.table import Table

from smartcolab.cli.common import (
    ENV_URL,
    Target,
    human_bytes,
    known_specs,
    open_runtime,
    out,
    print_json,
    runtime_label,
)
from smartcolab.client.registry import (
    COLAB,
    LOCAL,
    RuntimeSpec,
    check_kind,
    check_name,
    check_url,
    load_runtimes_file,
)
from smartcolab.shared.errors import InvalidInput, UnknownRuntime

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# ---------------------------------------------------------------- probe
async def probe(target: Target, *, as_json: bool) -> None:
    async with open_runtime(target) as (spec, client):
        p = await client.probe()
    if as_json:
        print_json(p)
        return
    table = Table(show_header=False, title=f"runtime {runtime_label(spec)}")
    ram = f"{human_bytes(p.ram_available_bytes)} free of {human_bytes(p.ram_total_bytes)}"
    disk = f"{human_bytes(p.disk_free_bytes)} free of {human_bytes(p.disk_total_bytes)} ({p.disk_root})"
    rows = [("platform", p.platform), ("accelerator", p.accelerator), ("python", p.python),
            ("CPUs", f"{p.cpu_count} (load {', '.join(f'{x:.2f}' for x in p.load_avg)})"),
            ("RAM", ram), ("disk", disk)]
    for g in p.gpus:
        rows.append((f"GPU {g.index}", f"{g.name}: {g.memory_used_mb} / {g.memory_total_mb} MB used"))
    if p.session_time_left_s is not None:
        rows.append(("time left", f"{p.session_time_left_s / 3600:.1f} h"))
    rows += [("server uptime", f"{p.server_uptime_s:.0f} s"), ("version", p.version),
             ("epoch", p.epoch)]
    if p.packages:
        rows.append(("packages", ", ".join(f"{k} {v}" for k, v in sorted(p.packages.items()))))
    for note in p.notes:
        rows.append(("note", note))
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)


# ---------------------------------------------------------------- secrets, never from argv
MAX_SECRET_CHARS = 4096


def read_secret(path: Path) -> str:
    """A secret from a file (``-`` = stdin): its first line, stripped; refused when empty."""
    try:
        text = sys.stdin.read(MAX_SECRET_CHARS + 1) if str(path) == "-" else \
            path.expanduser().read_text(encoding="utf-8")[:MAX_SECRET_CHARS + 1]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the secret from {path}: {exc}") from exc
    lines = text.splitlines()
    secret = lines[0].strip() if lines else ""
    if not secret or len(secret) > MAX_SECRET_CHARS:
        raise InvalidInput(f"{'stdin' if str(path) == '-' else path} holds no secret on its "
                           f"first line (or one longer than {MAX_SECRET_CHARS} characters)")
    return secret


def secret_from(*, ask: bool, file: Path | None) -> str | None:
    """The secret ``runtimes add`` stores: prompted (hidden) or read from a file or stdin."""
    if ask and file is not None:
        raise InvalidInput("give either --ask-secret or --secret-file, not both")
    if file is not None:
        return read_secret(file)
    if ask:
        import typer

        value = str(typer.prompt("Secret (not shown)", hide_input=True)).strip()
        if not value:
            raise InvalidInput("no secret was entered")
        return value
    return None


# ---------------------------------------------------------------- runtimes file
def read_raw(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        return data
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read the runtimes file {path}: {exc}") from exc


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    # A JSON string is a valid TOML basic string (same escapes, no raw control chars).
    return json.dumps(str(v), ensure_ascii=False)


def render_toml(data: dict[str, Any]) -> str:
    """The runtimes file's flat shape: top-level scalars, then ``[runtimes.NAME]`` tables."""
    lines = ["# Named runtimes for smartcolab (see docs/cli.md); may hold secrets: keep private."]
    lines += [f"{k} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, entry in (data.get("runtimes") or {}).items():
        lines += ["", f"[runtimes.{_value(name) if not name.replace('-', '').replace('_', '').isalnum() else name}]"]
        lines += [f"{k} = {_value(v)}" for k, v in entry.items() if not isinstance(v, dict)]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_runtime(path: Path, name: str, url: str, *, secret: str | None, secret_env: str | None,
                description: str, make_default: bool, replace: bool, kind: str = "runtime",
                options: dict[str, Any] | None = None) -> None:
    check_name(name)
    if name == LOCAL:
        raise InvalidInput("'local' is the embedded runtime and cannot be redefined")
    data = read_raw(path)
    runtimes = data.setdefault("runtimes", {})
    if name in runtimes and not replace:
        raise InvalidInput(f"runtime {name!r} already exists in {path}; pass --replace to change it")
    entry: dict[str, Any] = {"url": check_url(url)}
    if check_kind(kind) != "runtime":
        entry["kind"] = kind
    entry.update(options or {})
    if secret:
        entry["secret"] = secret
    if secret_env:
        entry["secret_env"] = secret_env
    if description:
        entry["description"] = description
    runtimes[name] = entry
    if make_default:
        data = {"default": name, **{k: v for k, v in data.items() if k != "default"}}
    text = render_toml(data)
    tomllib.loads(text)  # never write a file we could not read back
    write_atomic(path, text)
    load_runtimes_file(path, os.environ)  # and one the bridge accepts


# ---------------------------------------------------------------- the colab kind
def _spec(path: Path, name: str) -> RuntimeSpec:
    specs, _ = known_specs(path=path)
    for spec in specs:
        if spec.name == name:
            return spec
    raise UnknownRuntime(f"no runtime named {name!r} in {path}", details={"runtime": name})


async def add_colab(path: Path, name: str, *, accelerator: str, options: dict[str, Any],
                    description: str, make_default: bool, replace: bool) -> str:
    """Write the entry, sign in once (the browser flow), assign (or find) the runtime."""
    from smartcolab.client.colab.service import COLAB_DOMAIN, ColabService, colab_settings
    from smartcolab.client.registry import COLAB_KIND, default_factories

    url = str(options.pop("url", COLAB_DOMAIN))
    options = {"accelerator": normalise(accelerator), **options}
    settings = colab_settings(url, options)  # refuses bad options before anything is written
    add_runtime(path, name, url, secret=None, secret_env=None, description=description,
                make_default=make_default, replace=replace, kind=COLAB_KIND, options=options)
    if not settings.token_path.exists():
        out.print("Signing in to Colab with your Google account (once; the tokens are kept "
                  f"in {settings.token_path}, mode 0600).")
        await ColabService(settings).signin()
    backend = default_factories()[COLAB_KIND](_spec(path, name))
    try:
        await backend.health()  # assigns the runtime, or finds the one this name holds
        probe = await backend.probe()
    finally:
        await backend.aclose()  # the runtime stays assigned; a bridge picks it up
    return "; ".join(probe.notes[-2:])


async def release(path: Path, name: str) -> bool:
    """Give runtime ``name`` back to Colab (its state is lost)."""
    from smartcolab.client.backend import Capability
    from smartcolab.client.registry import default_factories

    spec = _spec(path, name)
    backend = default_factories()[spec.kind](spec)
    try:
        backend.require(Capability.RELEASE)
        return await backend.release()
    finally:
        await backend.aclose()


def normalise(accelerator: str) -> str:
    from smartcolab.client.colab.service import normalise_accelerator

    return normalise_accelerator(accelerator)


def remove_runtime(path: Path, name: str) -> None:
    data = read_raw(path)
    runtimes = data.get("runtimes") or {}
    if name not in runtimes:
        raise UnknownRuntime(f"no runtime named {name!r} in {path}", details={"runtime": name})
    del runtimes[name]
    if data.get("default") == name:
        del data["default"]
    write_atomic(path, render_toml(data))


def list_runtimes(path: Path, *, as_json: bool) -> None:
    specs, default = known_specs(path=path)
    specs = [*specs, RuntimeSpec(LOCAL, "(embedded, started per command)",
                                 description="this machine", embedded=True)]
    if as_json:
        print_json({"file": str(path), "default": default_in_use(specs, default),
                    "file_default": default,
                    "runtimes": [s.public() for s in specs]})
        return
    table = Table(title=f"runtimes ({path}{'' if path.exists() else ', not created yet'})")
    for col in ("name", "url", "secret", "description"):
        table.add_column(col)
    used = default_in_use(specs, default)
    for s in specs:
        mark = ""
        if s.name == used:
            mark = " (default: $COLAB_URL is set)" if used == COLAB and os.environ.get(ENV_URL) else " (default)"
        elif s.name == default:
            mark = " (file default; $COLAB_URL wins)"
        table.add_row(s.name + mark, s.url, "yes" if s.secret else "-", s.description)
    out.print(table)


def default_in_use(specs: list[RuntimeSpec], file_default: str | None) -> str:
    """The runtime a command uses without --runtime/--url: $COLAB_URL's, else the file's
    default, else the embedded local one (as ``common.open_runtime`` chooses)."""
    names = {s.name for s in specs}
    if os.environ.get(ENV_URL) and COLAB in names:
        return COLAB
    if file_default and file_default in names:
        return file_default
    return LOCAL
