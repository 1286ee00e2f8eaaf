"""The real bridge against a hostile runtime: nothing outside the save dir, no bytes past
what was stated, clear errors (issue 16, items 1, 7 and 15)."""

from __future__ import annotations

import base64
import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp import Client, StdioServerParameters
from smartcolab.client.http import transfer, transfer_dir
from smartcolab.client.http.client import RuntimeClient
from smartcolab.client.jupyter.files import JupyterFiles
from smartcolab.client.jupyter.kernel import JupyterRest
from smartcolab.client.registry import RuntimeSpec
from smartcolab.client.untrusted import TransferLimits
from smartcolab.mcp.deps import BridgeSettings
from smartcolab.mcp.results import RenderOptions, render_images
from smartcolab.mcp.server import BridgeConfig
from smartcolab.shared.errors import (
    ChecksumMismatch,
    LocalWriteFailed,
    RuntimeMisbehaved,
)
from smartcolab.shared.protocol import OutputAttachment, RichOutput
from support.bridge_helpers import FAST_RETRY, bridge, text_of
from support.faults_helpers import tiny_filesystem
from support.hostile_runtime import PNG_1X1, HostileFile, Plan, serve_hostile, tar_of
from support.runtime_proc import subprocess_env

pytestmark = pytest.mark.anyio
MB = 1024 * 1024
TRAVERSAL = "../../x/pwned"


@pytest.fixture
def hostile() -> Iterator[tuple[Plan, str]]:
    plan = Plan()
    with serve_hostile(plan) as url:
        yield plan, url


def config_for(tmp: Path, url: str) -> BridgeConfig:
    return BridgeConfig(
        settings=BridgeSettings(save_dir=tmp / "saved", checkpoint_dir=tmp / "ckpt",
                                max_images=1),
        runtimes=[RuntimeSpec("evil", url, "any-secret")], default_runtime="evil",
        embedded=False, retry=FAST_RETRY)


def files_outside(tmp: Path) -> list[str]:
    """Every file or folder under ``tmp`` that is not in the save or checkpoint dir."""
    allowed = {"saved", "ckpt"}
    return sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*")
                  if p.relative_to(tmp).parts[0] not in allowed)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


def saved_bytes(tmp: Path) -> int:
    return sum(p.stat().st_size for p in (tmp / "saved").rglob("*") if p.is_file())


# ---------------------------------------------------------------- ids and names
@pytest.mark.parametrize("bad_id", [TRAVERSAL, "/abs/pwned", "other-job"])
async def test_job_ids_from_the_runtime_are_checked(hostile: tuple[Plan, str], tmp_path: Path,
                                                    bad_id: str) -> None:
    plan, url = hostile
    plan.job_id = bad_id
    work = tmp_path / "work"
    work.mkdir()
    with anyio.fail_after(60):
        async with bridge(config_for(work, url)) as (client, _):
            res = await client.call_tool("run_code_quick", {"code": "print(1)"})
    assert res.is_error
    assert "runtime_misbehaved" in text_of(res) and "job" in text_of(res)
    assert files_outside(work) == [] and not (tmp_path / "x").exists()
    assert not list((work / "saved").rglob("*.png")) if (work / "saved").exists() else True


async def test_session_names_from_the_runtime_are_checked(hostile: tuple[Plan, str]) -> None:
    plan, url = hostile
    plan.session_names = ["main", "../../etc"]
    async with RuntimeClient(url, "s", retry=FAST_RETRY) as c:
        with pytest.raises(RuntimeMisbehaved, match="invalid session name"):
            await c.sessions()
    plan.session_names, plan.session = ["main"], "../x"
    async with RuntimeClient(url, "s", retry=FAST_RETRY) as c:
        with pytest.raises(RuntimeMisbehaved, match="invalid session name"):
            await c.get_job("job-1")


async def test_well_behaved_images_are_spilled_inside_the_save_dir(
        hostile: tuple[Plan, str], tmp_path: Path) -> None:
    _, url = hostile
    with anyio.fail_after(60):
        async with bridge(config_for(tmp_path, url)) as (client, _):
            res = await client.call_tool("run_code_quick", {"code": "print(1)"})
    assert not res.is_error, text_of(res)
    spilled = sorted((tmp_path / "saved").glob("*.png"))
    assert len(spilled) == 2 and all(p.read_bytes() == PNG_1X1 for p in spilled)
    assert len(list((tmp_path / "saved").glob("*.html"))) == 1
    assert files_outside(tmp_path) == []


def test_results_never_build_a_path_from_an_unchecked_job_id(tmp_path: Path) -> None:
    save = tmp_path / "deep" / "saved"
    out = RichOutput(type="display_data", image_mime="image/png",
                     image_base64=base64.b64encode(PNG_1X1).decode(),
                     attachments=[OutputAttachment(mime="text/html", data="<b>x</b>", size=8)])
    opts = RenderOptions(max_chars=1000, max_images=0, max_image_bytes=10, save_dir=save)
    for bad in (TRAVERSAL, "/tmp/pwned", "a/b", "", "..", "x\x00y"):
        images, notes = render_images(bad, [out], opts)
        assert images == [] and len(notes) == 2, (bad, notes)
        assert all("not saved" in n for n in notes), (bad, notes)
    assert listing(tmp_path) == []
    images, notes = render_images("good-id", [out], opts)
    assert sorted(p.name for p in save.iterdir()) == ["good-id-image1.png", "good-id-output1.html"]


# ---------------------------------------------------------------- sizes and encodings
async def test_no_more_bytes_than_stated(hostile: tuple[Plan, str], tmp_path: Path) -> None:
    plan, url = hostile
    plan.files["f.bin"] = HostileFile(body=os.urandom(2 * MB), stated_size=1000)
    with anyio.fail_after(60):
        async with bridge(config_for(tmp_path, url)) as (client, _):
            res = await client.call_tool("download_from_colab", {"path": "f.bin"})
    assert res.is_error and "runtime_misbehaved" in text_of(res)
    assert "more than the 1,000 bytes" in text_of(res)
    assert "Nothing of that answer was kept" in text_of(res)
    assert saved_bytes(tmp_path) == 0 and files_outside(tmp_path) == []


async def test_gzip_sent_for_an_identity_request_is_refused(hostile: tuple[Plan, str],
                                                            tmp_path: Path) -> None:
    plan, url = hostile
    body = b"\0" * (64 * MB)  # about 64 KB on the wire
    plan.files["bomb.bin"] = HostileFile(body=body, encoding="gzip", gzip_body=True)
    with anyio.fail_after(60):
        async with bridge(config_for(tmp_path, url)) as (client, _):
            res = await client.call_tool("download_from_colab", {"path": "bomb.bin"})
    assert res.is_error and "Content-Encoding 'gzip'" in text_of(res), text_of(res)
    assert saved_bytes(tmp_path) == 0


async def test_asked_gzip_is_still_capped_at_the_stated_size(hostile: tuple[Plan, str],
                                                             tmp_path: Path) -> None:
    plan, url = hostile
    plan.files["bomb.log"] = HostileFile(body=b"A" * (32 * MB), encoding="gzip", gzip_body=True,
                                         stated_size=300_000)
    async with RuntimeClient(url, "s", retry=FAST_RETRY) as c:
        with pytest.raises(RuntimeMisbehaved, match="more than the 300,000 bytes"):
            await transfer.download(c, "bomb.log", tmp_path, compress=True)
    assert listing(tmp_path) == []


async def test_an_unasked_encoding_is_refused_even_with_gzip_asked(
        hostile: tuple[Plan, str], tmp_path: Path) -> None:
    plan, url = hostile
    plan.files["x.bin"] = HostileFile(body=b"abc", encoding="br")
    async with RuntimeClient(url, "s", retry=FAST_RETRY) as c:
        with pytest.raises(RuntimeMisbehaved, match="Content-Encoding 'br'"):
            await transfer.download(c, "x.bin", tmp_path, compress=True)
    assert listing(tmp_path) == []


async def test_free_space_is_checked_before_the_first_byte(hostile: tuple[Plan, str],
                                                           tmp_path: Path) -> None:
    plan, url = hostile
    plan.files["huge.bin"] = HostileFile(body=b"x", stated_size=2 ** 60)
    async with RuntimeClient(url, "s", retry=FAST_RETRY) as c:
        with pytest.raises(LocalWriteFailed, match="would not fit"):
            await transfer.download(c, "huge.bin", tmp_path)
    # Only the first span's request (a new download asks it before any stat; this server
    # answers it with the whole body, which is left unread): nothing was written.
    assert sum("/files/content" in r for r in plan.requests) <= 1
    assert not any(n.endswith(".part") for n in listing(tmp_path))


async def test_a_body_of_another_version_is_not_kept(hostile: tuple[Plan, str],
                                                     tmp_path: Path) -> None:
    plan, url = hostile
    plan.files["v.bin"] = HostileFile(body=b"new bytes", content_etag='"v2"')
    async with RuntimeClient(url, "s", retry=FAST_RETRY) as c:
        with pytest.raises(ChecksumMismatch, match="changed on the runtime"):
            await transfer.download(c, "v.bin", tmp_path)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("kind", ["more", "gzip"])
async def test_the_jupyter_backend_gets_the_same_caps(hostile: tuple[Plan, str], tmp_path: Path,
                                                      kind: str) -> None:
    """One skeleton: a Jupyter Server's /files/ is held to the stated size and encoding too."""
    plan, url = hostile
    plan.files["j.bin"] = (HostileFile(body=os.urandom(MB), stated_size=1000) if kind == "more"
                           else HostileFile(body=b"\0" * (8 * MB), encoding="gzip",
                                            gzip_body=True))
    rest = JupyterRest(url, "tok")

    async def no_kernel(path: str) -> dict[str, Any]:
        raise AssertionError("the server gave the hash")

    try:
        with pytest.raises(RuntimeMisbehaved, match="more than the 1,000" if kind == "more"
                           else "Content-Encoding 'gzip'"):
            await JupyterFiles(rest, no_kernel).download("j.bin", tmp_path)
    finally:
        await rest.aclose()
    assert listing(tmp_path) == []


# ---------------------------------------------------------------- archives
async def test_hostile_archive_members_through_the_tool(hostile: tuple[Plan, str],
                                                        tmp_path: Path) -> None:
    plan, url = hostile
    plan.archives["data"] = tar_of([(".", None), ("data", None), ("data/ok.txt", b"fine"),
                                    ("../escape.txt", b"bad"), ("/abs.txt", b"bad"),
                                    ("other/x.txt", b"bad"), ("data/../../up.txt", b"bad")])
    with anyio.fail_after(60):
        async with bridge(config_for(tmp_path, url)) as (client, _):
            res = await client.call_tool("download_from_colab", {"path": "data"})
            assert not res.is_error, text_of(res)
            assert "refused unsafe members" in text_of(res)
            refused_text = text_of(res).split("refused unsafe members: ", 1)[1]
            assert refused_text.count("outside the archive's top directory") == 1  # other/x.txt
            assert "'.'" not in refused_text and not refused_text.startswith(".:")
            # overwrite=true replaces an existing directory (it never did before)
            again = await client.call_tool("download_from_colab",
                                           {"path": "data", "overwrite": True})
            assert not again.is_error, text_of(again)
            refused = await client.call_tool("download_from_colab", {"path": "data"})
            assert refused.is_error and "already exists" in text_of(refused)
    saved = tmp_path / "saved"
    assert sorted(p.name for p in saved.iterdir()) == ["data"]  # no staging left behind
    assert (saved / "data" / "ok.txt").read_bytes() == b"fine"
    assert files_outside(tmp_path) == []
    assert not {"escape.txt", "abs.txt", "up.txt"} & set(listing(tmp_path))


async def test_a_dot_only_archive_is_a_clear_error(hostile: tuple[Plan, str],
                                                   tmp_path: Path) -> None:
    plan, url = hostile
    plan.archives["dots"] = tar_of([(".", None), ("./", None)])
    with anyio.fail_after(60):
        async with bridge(config_for(tmp_path, url)) as (client, _):
            res = await client.call_tool("download_from_colab", {"path": "dots"})
    assert res.is_error and "no top directory" in text_of(res), text_of(res)
    assert listing(tmp_path / "saved") == []


@pytest.mark.parametrize(("limits", "match"), [
    (TransferLimits(max_members=5), "more than 5 members"),
    (TransferLimits(max_extracted_bytes=3 * MB), "extracted tree of 'd' passed 3,145,728 bytes"),
    (TransferLimits(max_archive_bytes=100_000), "passed 100,000 bytes"),
])
async def test_archive_caps(hostile: tuple[Plan, str], tmp_path: Path, limits: TransferLimits,
                            match: str) -> None:
    plan, url = hostile
    members: list[tuple[str, bytes | None]] = [("d", None)]
    members += [(f"d/f{i}.bin", os.urandom(100 * 1024)) for i in range(4)]
    members += [(f"d/zero{i}.bin", b"\0" * MB) for i in range(4)]
    plan.archives["d"] = tar_of(members)
    async with RuntimeClient(url, "s", retry=FAST_RETRY) as c:
        with pytest.raises(RuntimeMisbehaved, match=match):
            await transfer_dir.download_dir(c, "d", tmp_path / "saved", limits=limits)
    assert listing(tmp_path / "saved") == []


async def test_a_directory_larger_than_the_disk_is_local_write_failed(
        hostile: tuple[Plan, str], tmp_path: Path) -> None:
    """A big (not hostile) directory on a small disk: this machine's problem, said so."""
    plan, url = hostile
    plan.archives["big"] = tar_of([("big", None), ("big/zeros.bin", b"\0" * (3 * MB))])
    save = tmp_path / "saved"
    limits = TransferLimits(free_reserve=0)
    with tiny_filesystem(save, size_kb=1024):
        async with RuntimeClient(url, "s", retry=FAST_RETRY) as c:
            with pytest.raises(LocalWriteFailed, match="does not fit") as info:
                await transfer_dir.download_dir(c, "big", save, limits=limits)
        assert info.value.details["errno"] == errno.ENOSPC
        assert listing(save) == []  # no archive, no staging directory


def test_a_full_disk_while_extracting_is_local_write_failed(tmp_path: Path) -> None:
    """EFBIG (a file-size limit, like a full disk) is this machine's fault, said so."""
    archive = tmp_path / "a.tar"
    archive.write_bytes(tar_of([("top", None), ("top/big.bin", b"\1" * (2 * MB))],
                               compress=False))
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from smartcolab.client.http import transfer_dir\n"
        "from smartcolab.shared.errors import LocalWriteFailed\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))\n"
        "d = Path(sys.argv[1])\n"
        "try:\n"
        "    transfer_dir._extract_into(d / 'a.tar', 'none', d / 'out' / 'top', False)\n"
        "except LocalWriteFailed as exc:\n"
        "    print('LWF', exc.details.get('errno'))\n"
    )
    (tmp_path / "out").mkdir()
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, timeout=60, env=subprocess_env({}))
    assert done.stdout.startswith("LWF"), done.stdout + done.stderr
    assert list((tmp_path / "out").iterdir()) == []  # staging removed


# ---------------------------------------------------------------- the real stdio bridge
async def test_stdio_bridge_against_a_hostile_runtime(hostile: tuple[Plan, str],
                                                      tmp_path: Path) -> None:
    plan, url = hostile
    plan.job_id = TRAVERSAL
    plan.files["f.bin"] = HostileFile(body=os.urandom(MB), stated_size=10)
    env = subprocess_env({"COLAB_URL": url, "COLAB_TOKEN": "any-secret",
                          "LOCAL_SAVE_DIR": str(tmp_path / "saved"),
                          "CHECKPOINT_DIR": str(tmp_path / "ckpt"), "HOME": str(tmp_path / "ckpt")})
    env.pop("SMARTCOLAB_RUNTIMES", None)
    params = StdioServerParameters(command=sys.executable, env=env, cwd=str(tmp_path / "ckpt"),
                                   args=["-m", "smartcolab", "mcp", "--no-embedded",
                                         "--max-images", "1", "--log-level", "WARNING"])
    (tmp_path / "ckpt").mkdir()
    with anyio.fail_after(90):
        async with Client(params) as client:
            ran = await client.call_tool("run_code_quick", {"code": "print(1)"})
            got = await client.call_tool("download_from_colab", {"path": "f.bin"})
    assert ran.is_error and "runtime_misbehaved" in text_of(ran), text_of(ran)
    assert got.is_error and "more than the 10 bytes" in text_of(got), text_of(got)
    assert files_outside(tmp_path) == [] and saved_bytes(tmp_path) == 0
