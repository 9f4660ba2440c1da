"""HTTPS for any emulator: a throwaway self-signed certificate for 127.0.0.1."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

from .base import Emulator


def make_cert(folder: Path) -> tuple[Path, Path] | None:
    """(cert.pem, key.pem) made by the openssl CLI, or None when it is not installed."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def serve_tls(emulator: Emulator, cert: Path, key: Path) -> str:
    """Start `emulator` speaking TLS; returns its https:// base URL.

    The listening socket is wrapped after `start()` (the base class builds the server): the
    serving thread keeps the same file descriptor, and no client knows the port yet.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    emulator.start()
    server = emulator._server
    assert server is not None
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return emulator.url.replace("http://", "https://", 1)
