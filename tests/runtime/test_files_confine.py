"""The one confinement function, by example and by property (hypothesis)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartcolab.runtime.files.service import FileService
from smartcolab.shared.errors import InvalidInput, PathOutsideRoots


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> FileService:
    base = Path(tmp_path_factory.mktemp("confine"))
    root, extra = base / "root", base / "extra"
    for d in (root / "a" / "b", extra / "x", base / "outside"):
        d.mkdir(parents=True)
    (root / "a" / "f.txt").write_text("in")
    (base / "outside" / "secret").write_text("out")
    (root / "up").symlink_to(base)
    (root / "a" / "loop").symlink_to(root / "a")
    (root / "to_extra").symlink_to(extra)
    (root / "to_secret").symlink_to(base / "outside" / "secret")
    return FileService([root, extra], state_dir=root / ".smartcolab")


def test_examples(service: FileService) -> None:
    root, extra = service.roots
    assert service.confine("").path == root
    assert service.confine("a/f.txt").path == root / "a" / "f.txt"
    assert service.confine(str(root / "a")).rel == "a"
    assert service.confine(str(extra / "x")).root == extra
    assert service.confine("to_extra/x").root == extra  # a link into another root is fine
    assert service.confine("a/loop/loop/f.txt").path == root / "a" / "f.txt"
    assert service.confine("a/../a/b").path == root / "a" / "b"
    for bad in ("..", "../outside/secret", "up/outside/secret", "to_secret", "/etc/passwd",
                str(root.parent), "a/b/../../.."):
        with pytest.raises(PathOutsideRoots, match="outside the runtime's roots"):
            service.confine(bad)
    # Deleting a link deletes the link, which lives inside the root.
    assert service.confine("to_secret", follow_final=False).path == root / "to_secret"
    with pytest.raises(PathOutsideRoots):
        service.confine("up/outside/secret", follow_final=False)
    for bad in ("a\x00", "n" * 256, "a/" * 2049):
        with pytest.raises(InvalidInput):
            service.confine(bad)


SEGMENTS = st.sampled_from(["..", ".", "", "a", "b", "f.txt", "up", "loop", "to_extra",
                            "to_secret", "outside", "secret", "x", "%2e%2e", "..\\..", "\u00e9",
                            "a&b", "#", "?", " "])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(SEGMENTS, max_size=8), absolute=st.booleans(), follow=st.booleans())
def test_confined_paths_stay_inside_a_root(service: FileService, parts: list[str],
                                           absolute: bool, follow: bool) -> None:
    raw = "/".join(parts)
    if absolute:
        raw = str(service.roots[0]) + "/" + raw
    try:
        got = service.confine(raw, follow_final=follow)
    except (PathOutsideRoots, InvalidInput):
        return
    if follow:
        real = Path(os.path.realpath(got.path))
    else:  # the final link itself is kept; everything above it is resolved
        real = Path(os.path.realpath(got.path.parent)) / got.path.name
    assert real == got.path
    assert any(real == r or r in real.parents for r in service.roots), (raw, got)
    assert got.root in service.roots
