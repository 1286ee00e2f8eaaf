"""What the docs and the error messages name exists.

Read: README.md, docs/*.md (the user docs) and every string in src/ (error messages and
hints).  Checked: relative links and the repository paths written in backticks; a
section named as ``FILE, 'Heading'`` or ``README, 'Heading'``; every ``smartcolab``
command line (its subcommands and each ``--flag``) against the real typer app.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "smartcolab"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SOURCES = sorted(PACKAGE.rglob("*.py"))

TOP_DIRS = ("src", "tests", "docs", "colab", "config", "bench", "scripts", "docker")
TOP_FILES = {"Dockerfile", "LICENSE", "README.md", "SECURITY.md", "pyproject.toml",
             "package.json", ".dockerignore", ".gitignore"}
# Package-relative paths written without src/smartcolab/ (e.g. `shared/protocol.py`).
PACKAGE_DIRS = tuple(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
# Written by runs, ignored by git: named in docs before they exist.
GENERATED = ("bench/results/", "results/")
PLACEHOLDER = re.compile(r"[*<>{}]|\.\.\.|…|NAME|VERSION|FILE|SESSION|\bX\b")


def doc_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# ---------------------------------------------------------------- paths
def backticked(text: str) -> Iterator[str]:
    yield from re.findall(r"`([^`\n]+)`", text)


def path_candidates(text: str) -> Iterator[str]:
    """Repository paths written in inline code (a whole span that looks like one)."""
    for span in backticked(text):
        token = span.strip().rstrip(".,:")
        if (" " in token or PLACEHOLDER.search(token) or "://" in token or token.startswith("~")
                or token.startswith(GENERATED)):
            continue
        first = token.split("/", 1)[0]
        if token in TOP_FILES or (first in TOP_DIRS and "/" in token):
            yield token
        elif first in PACKAGE_DIRS and "/" in token and token.endswith((".py", ".js", ".css", ".html", "/")):
            yield "src/smartcolab/" + token


def path_exists(token: str) -> bool:
    return (REPO / token.split("#", 1)[0].split("::", 1)[0]).exists()


def links(path: Path) -> Iterator[tuple[str, str]]:
    """(target file, anchor) of each relative Markdown link."""
    for target in re.findall(r"\]\(([^)\s]+)\)", doc_text(path)):
        if "://" in target or target.startswith("mailto:"):
            continue
        file, _, anchor = target.partition("#")
        yield (rel((path.parent / file).resolve()) if file else rel(path)), anchor


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_named_file_exists(doc: Path) -> None:
    text = doc_text(doc)
    missing = [t for t in path_candidates(text) if not path_exists(t)]
    missing += [f"link {f}" for f, _ in links(doc) if not (REPO / f).exists()]
    assert missing == [], f"{rel(doc)} names what does not exist: {missing}"


def test_every_file_named_in_a_message_exists() -> None:
    missing = []
    for source in SOURCES:
        for token in re.findall(r"\b((?:docs|colab|config|scripts|docker)/[\w./-]+\.\w+)", doc_text(source)):
            if not path_exists(token.rstrip(".")):
                missing.append(f"{rel(source)}: {token}")
    assert missing == []


# ---------------------------------------------------------------- sections
def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@cache
def headings(file: str) -> frozenset[str]:
    text = (REPO / file).read_text(encoding="utf-8")
    return frozenset(h.strip().strip("`") for h in re.findall(r"^#{1,6}\s+(.+)$", text, re.M))


SECTION_REF = re.compile(r"\b(README|[\w/.-]+\.md)(?:'s|,)\s+['\"“]([^'\"”]+)['\"”]")


def section_refs(text: str) -> Iterator[tuple[str, str]]:
    for file, section in SECTION_REF.findall(text):
        yield ("README.md" if file == "README" else file), " ".join(section.split())


@pytest.mark.parametrize("where", [*DOCS, *SOURCES], ids=rel)
def test_every_named_section_exists(where: Path) -> None:
    wrong = []
    for file, section in section_refs(doc_text(where)):
        if not (REPO / file).is_file():
            wrong.append(f"{file} (no such file)")
        elif section not in headings(file):
            wrong.append(f"{file}, '{section}'")
    if where.suffix == ".md":
        for file, anchor in links(where):
            if anchor and file.endswith(".md") and (REPO / file).is_file() and \
                    anchor not in {slug(h) for h in headings(file)}:
                wrong.append(f"{file}#{anchor}")
    assert wrong == [], f"{rel(where)} names sections that do not exist: {wrong}"


def test_the_auth_error_names_a_real_readme_section() -> None:
    from smartcolab.runtime.security import auth

    refs = list(section_refs(doc_text(Path(auth.__file__))))
    assert refs and all(section in headings(file) for file, section in refs), refs


# ---------------------------------------------------------------- commands and flags
@cache
def cli_root() -> Any:
    import typer.main

    from smartcolab.cli.app import app

    return typer.main.get_command(app)


COMMAND = re.compile(r"(?:^|[\s`'\"(/=])smartcolab((?:[ \t]+[^\s`'\"|;&#)]+)+)")


def command_lines(text: str) -> Iterator[list[str]]:
    """The words after each ``smartcolab`` written as a command (not ``smartcolab.x``)."""
    for line in text.splitlines():
        for match in COMMAND.finditer(line):
            yield match.group(1).split()


def looks_like_a_command(rest: list[str]) -> bool:
    """In prose ("the smartcolab runtime is serving") an unknown word is not a command;
    it is one when flags follow it."""
    return any(re.fullmatch(r"--?[a-z][\w-]*", w) for w in rest)


def check_command(words: list[str], *, strict: bool = True) -> str | None:
    """None when the command and all its --flags exist, else what is wrong."""
    command = cli_root()
    path = ["smartcolab"]
    rest = list(words)
    while rest and hasattr(command, "commands") and not rest[0].startswith("-"):
        name = rest.pop(0)
        if name not in command.commands:
            if path == ["smartcolab"] and not re.fullmatch(r"[a-z][a-z-]*", name):
                return None  # not a command line (prose such as "smartcolab's")
            if not strict and not looks_like_a_command(rest):
                return None
            return f"{' '.join(path)} has no command {name!r}"
        command = command.commands[name]
        path.append(name)
    if hasattr(command, "commands") and path != ["smartcolab"] and not rest:
        return None  # a group named alone
    options = {opt for p in command.params for opt in [*p.opts, *p.secondary_opts]} | {"--help"}
    for word in rest:
        flag = word.split("=", 1)[0]
        if flag.startswith("--") and re.fullmatch(r"--[a-z][a-z0-9-]*", flag) and flag not in options:
            return f"{' '.join(path)} has no option {flag}"
    return None


def md_code(text: str) -> str:
    """The code of a Markdown text: fenced blocks and inline spans (prose may say
    "smartcolab" without meaning a command)."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    return "\n".join([*blocks, *backticked(prose)])


def py_strings(text: str) -> str:
    """Every string literal of a module (messages, hints, docstrings' examples)."""
    found = [n.value for n in ast.walk(ast.parse(text))
             if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return "\n".join(found)


def wrong_commands(text: str, *, strict: bool = True) -> list[str]:
    found = []
    for words in command_lines(text):
        problem = check_command(words, strict=strict)
        if problem:
            found.append(f"{problem}: smartcolab {' '.join(words)}")
    return found


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_command_and_flag_in_the_docs_exists(doc: Path) -> None:
    assert wrong_commands(md_code(doc_text(doc))) == []


def test_every_command_and_flag_in_messages_exists() -> None:
    wrong = [f"{rel(s)}: {w}" for s in SOURCES for w in wrong_commands(py_strings(doc_text(s)), strict=False)]
    assert wrong == []


def test_the_checker_catches_what_it_is_for(tmp_path: Path) -> None:
    """Each check fails on a made-up mistake (so a passing run means something)."""
    assert wrong_commands("run `smartcolab exec --no-such-flag x`")
    assert wrong_commands("smartcolab runtimes frobnicate")
    assert wrong_commands("'smartcolab runtime add x --secret-env V'", strict=False)
    assert not wrong_commands("the smartcolab runtime is serving", strict=False)
    assert not wrong_commands("smartcolab exec -f train.py --timeout 3600; smartcolab.serve()")
    assert list(section_refs("see README, 'Authentication'")) == [("README.md", "Authentication")]
    assert md_code("prose smartcolab nonsense\n```bash\nsmartcolab exec\n```\nand `smartcolab ls`") \
        == "smartcolab exec\n\nsmartcolab ls"
    assert "Nope" not in headings("README.md")
    assert not path_exists("docs/no-such-file.md")
    assert list(path_candidates("`shared/protocol.py` and `docs/cli.md`")) == [
        "src/smartcolab/shared/protocol.py", "docs/cli.md"]
