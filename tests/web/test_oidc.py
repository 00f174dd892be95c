"""Single sign-on against a real OpenID Connect provider: NanoIDP (PyPI ``nanoidp``, a
spec-implementing test identity provider) on a free port."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from app.core.domain import Role
from app.web.app import create_app

IDP_PASSWORD = "idp password 1"
START_TIMEOUT = 30.0
TRANSACTION = re.compile(r'name="transaction_id" value="([^"]+)"')


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def identity_provider(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("nanoidp")
    config = tmp_path / "idp"
    subprocess.run(
        [sys.executable, "-m", "nanoidp", "init", str(config)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    port = _free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = yaml.safe_load((config / "settings.yaml").read_text())
    settings["server"] = {"host": "127.0.0.1", "port": port}
    settings["oauth"]["issuer"] = issuer
    (config / "settings.yaml").write_text(yaml.safe_dump(settings))
    users = yaml.safe_load((config / "users.yaml").read_text())
    users["users"]["rad"] = {
        "password": IDP_PASSWORD,
        "email": "rad@example.org",
        "roles": ["USER"],
    }
    users["users"]["stranger"] = {"password": IDP_PASSWORD, "email": "x@example.org"}
    (config / "users.yaml").write_text(yaml.safe_dump(users))
    process = subprocess.Popen(
        [sys.executable, "-m", "nanoidp", "--config", str(config), "--port", str(port)],
        cwd=tmp_path,  # it writes its signing keys to the working folder
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, "NanoIDP exited"
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "NanoIDP did not start"
            time.sleep(0.1)
        yield issuer
    finally:
        process.terminate()
        process.wait(timeout=10)


def _sign_on(app_client: TestClient, username: str) -> httpx.Response:
    """Follow the redirect to the provider, log in there, come back with the code."""
    start = app_client.get("/auth/oidc/login?next=/worklist")
    assert start.status_code == 303, start.text
    authorize = start.headers["location"]
    with httpx.Client() as browser:
        form = browser.get(authorize)
        transaction = TRANSACTION.search(form.text)
        assert transaction, form.text[:500]
        answer = browser.post(
            authorize,
            data={"transaction_id": transaction[1], "username": username, "password": IDP_PASSWORD},
        )
    assert answer.status_code in (302, 303), answer.text[:500]
    back = urlsplit(answer.headers["location"])
    assert back.path == "/auth/oidc/callback"
    return app_client.get(f"{back.path}?{back.query}")


def test_single_sign_on_logs_in_the_matching_user(web, identity_provider: str) -> None:
    web.seed.user("rad", Role.RADIOLOGIST)
    settings = web.settings.model_copy(
        update={
            "oidc_issuer": identity_provider,
            "oidc_client_id": "demo-client",
            "oidc_client_secret": "demo-secret",
        }
    )
    app = create_app(settings, web.factory)
    client = TestClient(app, follow_redirects=False)
    assert "single sign-on" in client.get("/login").text

    done = _sign_on(client, "rad")
    assert done.status_code == 303, re.findall(r"alert[^>]*>([^<]+)<", done.text)
    assert done.headers["location"] == "/worklist"
    assert client.get("/api/me").json()["username"] == "rad"

    # an identity without a Radscribe account gets no session
    other = TestClient(app, follow_redirects=False)
    refused = _sign_on(other, "stranger")
    assert refused.status_code == 401 and "no active Radscribe user" in refused.text
    assert other.get("/api/me").status_code == 401

    # a callback that does not belong to this browser's login is refused
    forged = TestClient(app, follow_redirects=False)
    assert forged.get("/auth/oidc/callback?code=abc&state=xyz").status_code == 401
