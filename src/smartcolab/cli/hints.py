"""One-line hints appended to CLI error messages, for causes a message alone hides."""

from __future__ import annotations

_CERT_MARKERS = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "self-signed certificate",
                 "self signed certificate")

TLS_HINT = ("The runtime's TLS certificate is not trusted (a self-signed one?): point "
            "SSL_CERT_FILE at its certificate, e.g. SSL_CERT_FILE=/path/to/cert.pem "
            "smartcolab doctor --url URL (docs/platforms.md, 'A cloud VM (HTTPS, no tunnel)').")


def tls_problem(text: str) -> bool:
    """True when an error's text is a failed certificate verification."""
    return any(marker.lower() in text.lower() for marker in _CERT_MARKERS)


def for_error(text: str) -> str:
    """A hint for this error text, or ''."""
    return " " + TLS_HINT if tls_problem(text) else ""
