"""Single sign-on through OpenID Connect (authorization code flow with PKCE).

The hospital's identity provider authenticates; Radscribe maps the ID token's
``oidc_username_claim`` to an existing, active local user, whose role decides
what they may do.  The ID token is received directly from the provider's
token endpoint over the server's own connection, so its issuer, audience,
expiry and nonce are checked as OpenID Connect Core 1.0 section 3.1.3.7
allows (TLS authenticates the provider in place of the token signature).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.settings import Settings
from app.core.tables import User

HTTP_TIMEOUT_SECONDS = 10.0
DISCOVERY_TTL_SECONDS = 3600.0
CLOCK_SKEW_SECONDS = 120
SCOPES = "openid profile email"


class OidcError(ValueError):
    """Single sign-on failed; the message is safe to show (no token contents)."""


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str | None = None


@dataclass(frozen=True)
class Pending:
    """What the browser carries (signed) between the redirect and the callback."""

    state: str
    nonce: str
    verifier: str
    next_path: str


def _json(request: urllib.request.Request | str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except urllib.error.HTTPError as exc:
        try:
            error = str(json.loads(exc.read()).get("error", ""))[:64]
        except (ValueError, AttributeError):
            error = ""
        raise OidcError(f"the identity provider refused ({exc.code} {error})".strip()) from None
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError, ValueError) as exc:
        raise OidcError(f"the identity provider did not answer ({type(exc).__name__})") from None


class ProviderCache:
    """The provider's discovery document, fetched once an hour."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[float, Provider] | None = None

    def get(self, issuer: str) -> Provider:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < DISCOVERY_TTL_SECONDS:
                return self._cached[1]
        document = _json(f"{issuer}/.well-known/openid-configuration")
        try:
            provider = Provider(
                issuer=str(document["issuer"]).rstrip("/"),
                authorization_endpoint=str(document["authorization_endpoint"]),
                token_endpoint=str(document["token_endpoint"]),
                userinfo_endpoint=document.get("userinfo_endpoint"),
            )
        except KeyError as exc:
            raise OidcError(f"the provider's discovery document lacks {exc}") from None
        if provider.issuer != issuer:
            raise OidcError("the provider's discovery document names another issuer")
        with self._lock:
            self._cached = (time.monotonic(), provider)
        return provider


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def start(
    settings: Settings, provider: Provider, *, redirect_uri: str, next_path: str
) -> tuple[str, Pending]:
    """The provider's login URL and what to remember until the callback."""
    pending = Pending(
        state=secrets.token_urlsafe(24),
        nonce=secrets.token_urlsafe(24),
        verifier=secrets.token_urlsafe(48),
        next_path=next_path,
    )
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": settings.oidc_client_id or "",
            "redirect_uri": redirect_uri,
            "scope": SCOPES,
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": _challenge(pending.verifier),
            "code_challenge_method": "S256",
        }
    )
    separator = "&" if "?" in provider.authorization_endpoint else "?"
    return f"{provider.authorization_endpoint}{separator}{query}", pending


def _claims(id_token: str) -> dict[str, Any]:
    parts = id_token.split(".")
    if len(parts) != 3:
        raise OidcError("the provider returned a malformed ID token")
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims: dict[str, Any] = json.loads(payload)
    except (ValueError, json.JSONDecodeError):
        raise OidcError("the provider returned a malformed ID token") from None
    return claims


def validate_claims(
    claims: dict[str, Any], *, settings: Settings, provider: Provider, nonce: str, now: float
) -> None:
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if str(claims.get("iss", "")).rstrip("/") != provider.issuer:
        raise OidcError("the ID token is from another issuer")
    if settings.oidc_client_id not in audiences:
        raise OidcError("the ID token is for another client")
    if len(audiences) > 1 and claims.get("azp") != settings.oidc_client_id:
        raise OidcError("the ID token names another authorized party")
    if float(claims.get("exp", 0)) + CLOCK_SKEW_SECONDS < now:
        raise OidcError("the ID token has expired")
    if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise OidcError("the ID token does not answer this login (nonce)")


def finish(
    session: Session,
    settings: Settings,
    provider: Provider,
    *,
    code: str,
    pending: Pending,
    redirect_uri: str,
    now: float,
) -> User:
    """Exchange the code, check the ID token and return the matching active user."""
    body = urllib.parse.urlencode(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": pending.verifier,
        }
    ).encode()
    # client_secret_basic, the default client authentication of OpenID Connect
    credentials = ":".join(
        urllib.parse.quote(value or "", safe="")
        for value in (settings.oidc_client_id, settings.oidc_client_secret)
    )
    request = urllib.request.Request(
        provider.token_endpoint,
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
        },
        method="POST",
    )
    tokens = _json(request)
    id_token = tokens.get("id_token")
    if not isinstance(id_token, str):
        raise OidcError("the provider returned no ID token")
    claims = _claims(id_token)
    validate_claims(claims, settings=settings, provider=provider, nonce=pending.nonce, now=now)
    username = str(claims.get(settings.oidc_username_claim, "")).strip()
    access_token = tokens.get("access_token")
    if not username and provider.userinfo_endpoint and isinstance(access_token, str):
        # Profile claims may come from UserInfo only (OpenID Connect Core 5.4).
        info = _json(
            urllib.request.Request(
                provider.userinfo_endpoint,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            )
        )
        if info.get("sub") != claims.get("sub"):
            raise OidcError("the provider's user info is about another subject")
        username = str(info.get(settings.oidc_username_claim, "")).strip()
    user = session.scalar(select(User).where(User.username == username)) if username else None
    if user is None or not user.active:
        raise OidcError("this account has no active Radscribe user; ask an admin to add it")
    return user
