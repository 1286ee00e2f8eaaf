"""Property: a client path is accepted only if it really lies inside a root.

Paths are built from ``..``, ``.``, plain names, absolute prefixes and symlinks that
point inside and outside the roots; ``FileService.confine`` must accept exactly the
paths whose real location (every symlink followed) is inside a root, and what it
returns must be that location.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartcolab.runtime.files.service import FileService
from smartcolab.shared.errors import InvalidInput, PathOutsideRoots


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = Path(os.path.realpath(tmp_path_factory.mktemp("confine")))
    work, data, outside = base / "work", base / "data", base / "outside"
    for d in (work / "a" / "b", data / "c", outside / "secret"):
        d.mkdir(parents=True)
    (outside / "secret" / "key.txt").write_text("k")
    (work / "a" / "f.txt").write_text("f")
    (work / "link_out").symlink_to(outside)
    (work / "a" / "link_up").symlink_to(base)
    (work / "link_data").symlink_to(data)
    (data / "c" / "link_work").symlink_to(work / "a")
    (work / "dangling").symlink_to(base / "nowhere")
    return {"base": base, "work": work, "data": data, "outside": outside}


PARTS = ["..", ".", "", "a", "b", "c", "f.txt", "link_out", "link_up", "link_data",
         "link_work", "dangling", "secret", "key.txt", "work", "data", "outside", "x y", "é"]


def inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


@settings(max_examples=600, deadline=None)
@given(parts=st.lists(st.sampled_from(PARTS), max_size=7),
       anchor=st.sampled_from(["", "work", "data", "outside", "base", "/"]),
       follow=st.booleans())
def test_confine_accepts_exactly_what_is_inside(tree: dict[str, Path], parts: list[str],
                                                anchor: str, follow: bool) -> None:
    roots = [tree["work"], tree["data"]]
    service = FileService(roots)
    prefix = "/" if anchor == "/" else (str(tree[anchor]) + "/" if anchor else "")
    raw = prefix + "/".join(parts)
    candidate = Path(raw.strip() or ".")
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    if follow:
        real = Path(os.path.realpath(candidate))
    else:
        real = Path(os.path.realpath(candidate.parent)) / candidate.name \
            if candidate.name not in ("", ".", "..") else Path(os.path.realpath(candidate))
    try:
        got = service.confine(raw, follow_final=follow)
    except PathOutsideRoots:
        assert not inside(real, roots), f"{raw!r} refused but lies in a root: {real}"
        return
    except InvalidInput:
        return
    assert inside(real, roots), f"{raw!r} accepted but lies outside: {real}"
    assert got.path == real and inside(got.path, [got.root])
    if follow:
        assert Path(os.path.realpath(got.path)) == got.path  # no symlink left to follow
    elif got.path != got.root:  # a link itself (not followed) sits in a real directory
        assert inside(Path(os.path.realpath(got.path.parent)), roots)
