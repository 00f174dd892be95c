"""DICOM over TLS, with DCMTK's echoscu/storescu and the node's own client."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from dicom_node.send import Destination, send_files

from .conftest import ECHOSCU, RunningNode, run_tool, write_ct_series  # type: ignore[import-not-found]

StartNode = Callable[..., RunningNode]
OPENSSL = "/usr/bin/openssl"


def _openssl(*args: str) -> None:
    subprocess.run([OPENSSL, *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path / "pki"
    d.mkdir()
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Radscribe test CA",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.pem"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(d / "san.ext"),
            "-out",
            str(d / f"{name}.pem"),
        )
    return {p.stem + p.suffix: p for p in d.iterdir()}


def _echo(node: RunningNode, *tls: str) -> subprocess.CompletedProcess[str]:
    return run_tool([ECHOSCU, *tls, "-aec", "RADSCRIBE", "127.0.0.1", str(node.port)])


def test_tls_node_serves_tls_callers_only(
    start_node: StartNode, pki: dict[str, Path], tmp_path: Path
) -> None:
    node = start_node(
        dicom_tls_certificate=pki["server.pem"], dicom_tls_private_key=pki["server.key"]
    )
    assert _echo(node, "+tla", "+cf", str(pki["ca.pem"])).returncode == 0
    assert _echo(node).returncode != 0  # plain TCP is refused

    series = write_ct_series(tmp_path / "series", slices=3)
    stored = node.storescu(*series.files, extra=["+tla", "+cf", str(pki["ca.pem"])])
    assert stored.returncode == 0, stored.stderr
    context = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    destination = Destination("127.0.0.1", node.port, calling_aet="TESTSCU", tls=context)
    assert all(r.ok for r in send_files(series.files, destination))
    assert len(node.instances()) == 3


def test_client_certificates_can_be_required(start_node: StartNode, pki: dict[str, Path]) -> None:
    node = start_node(
        dicom_tls_certificate=pki["server.pem"],
        dicom_tls_private_key=pki["server.key"],
        dicom_tls_client_ca=pki["ca.pem"],
    )
    with_cert = _echo(
        node, "+tls", str(pki["client.key"]), str(pki["client.pem"]), "+cf", str(pki["ca.pem"])
    )
    assert with_cert.returncode == 0, with_cert.stderr
    assert _echo(node, "+tla", "+cf", str(pki["ca.pem"])).returncode != 0
