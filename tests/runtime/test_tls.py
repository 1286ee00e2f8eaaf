"""HTTPS serving for a VM reached directly: a throwaway self-signed certificate made here."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smartcolab.client.http.client import NO_RETRY, RuntimeClient
from smartcolab.shared.errors import RuntimeUnreachable
from support.runtime_proc import START_TIMEOUT_S, subprocess_env

pytestmark = pytest.mark.anyio


def make_self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, valid for one day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smartcolab-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path, str]]:
    tmp_path = tmp_path_factory.mktemp("tls")
    cert, key = make_self_signed(tmp_path)
    port_file, secret = tmp_path / "port", "tls-test-secret-0123456789"
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartcolab", "serve", "--host", "127.0.0.1", "--port", "0",
         "--port-file", str(port_file), "--root", str(tmp_path), "--tls-cert", str(cert),
         "--tls-key", str(key), "--plain-logs"],
        stdout=log, stderr=subprocess.STDOUT, env=subprocess_env({"SMARTCOLAB_SECRET": secret}))
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        context = ssl.create_default_context(cafile=str(cert))
        url = ""
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "TLS runtime did not start"
            if port_file.exists() and not url:
                url = f"https://127.0.0.1:{port_file.read_text()}"
            if url:
                try:
                    if httpx2.get(f"{url}/health", verify=context, timeout=2).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
            time.sleep(0.05)
        yield url, secret, cert, (tmp_path / "serve.log").read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


async def test_https_with_a_pinned_self_signed_certificate(
        tls_runtime: tuple[str, str, Path, str]) -> None:
    url, secret, cert, banner = tls_runtime
    assert f"listening on {url}" in banner
    context = ssl.create_default_context(cafile=str(cert))
    async with RuntimeClient(url, secret, verify=context) as client:
        probe = await client.probe()
        assert probe.cpu_count >= 1
    # Without the certificate, verification fails: nothing silently falls back to trust.
    async with RuntimeClient(url, secret, retry=NO_RETRY) as untrusting:
        with pytest.raises(RuntimeUnreachable, match="cannot reach"):
            await untrusting.probe()
    # Plain HTTP to the TLS port is refused, never answered in clear text.
    with pytest.raises(httpx2.TransportError):
        httpx2.get(url.replace("https://", "http://") + "/health", timeout=5)


def test_unauthenticated_https_request_is_401(tls_runtime: tuple[str, str, Path, str]) -> None:
    url, _, cert, _ = tls_runtime
    context = ssl.create_default_context(cafile=str(cert))
    assert httpx2.get(f"{url}/probe", verify=context, timeout=5).status_code == 401


async def test_bridge_trusts_the_certificate_through_ssl_cert_file(
        tls_runtime: tuple[str, str, Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """What docs/platforms.md tells users: SSL_CERT_FILE in the MCP client's env."""
    url, secret, cert, _ = tls_runtime
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    async with RuntimeClient(url, secret) as client:
        assert (await client.probe()).cpu_count >= 1
