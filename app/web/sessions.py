"""Signed session cookies, CSRF tokens, the session cache and the cookie middleware.

The cookie is a small JSON payload (session id, user id, a fingerprint of the
password hash) signed with HMAC-SHA256 under ``settings.effective_secret_key``.
Nothing about the patient is in it.  The session itself is a row
(:mod:`app.services.web_sessions`): login time, last activity and whether it
ended.  The server checks on every request: signature, the row live, idle
time, absolute lifetime, the user still active with the same password.

The cookie is HttpOnly and SameSite=Lax, and Secure when the request came over
HTTPS (or ``cookie_secure`` forces it).  Handlers ask for a new cookie through
``request.state`` and :class:`SessionCookieMiddleware` writes it, so a handler
can return any response type.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from http.cookies import SimpleCookie
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.services.short_cache import ShortCache
from app.services.web_sessions import SessionState

SESSION_COOKIE = "radscribe_session"
LOGIN_COOKIE = "radscribe_login"  # pre-session cookie that binds the login form's CSRF token
OIDC_COOKIE = "radscribe_oidc"  # state, nonce and PKCE verifier between redirect and callback
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# Requests that must not count as activity (the worklist's self-refresh).
BACKGROUND_HEADER = "X-Radscribe-Background"
# Record activity at most this often: the idle clock has this resolution.
REFRESH_AFTER_SECONDS = 30.0
# How long a web process trusts a session row it read (a logout in another
# process reaches this one within this time; in this process at once).
SESSION_CACHE_SECONDS = 2.0
STATE_SET = "radscribe_set_session"
STATE_CLEAR = "radscribe_clear_session"


@dataclass(frozen=True)
class SessionData:
    sid: str
    uid: int
    fingerprint: str


class SessionCodec:
    """Encode, sign and verify session payloads; derive CSRF tokens."""

    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(("radscribe-session:" + secret_key).encode()).digest()

    def _sign(self, data: bytes) -> str:
        digest = hmac.new(self._key, data, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def encode(self, session: SessionData) -> str:
        body = base64.urlsafe_b64encode(
            json.dumps(asdict(session), separators=(",", ":")).encode()
        ).rstrip(b"=")
        return f"{body.decode()}.{self._sign(body)}"

    def decode(self, value: str | None) -> SessionData | None:
        if not value or value.count(".") != 1:
            return None
        body, signature = value.split(".")
        if not hmac.compare_digest(self._sign(body.encode()), signature):
            return None
        try:
            raw: dict[str, Any] = json.loads(
                base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            )
            return SessionData(
                sid=str(raw["sid"]), uid=int(raw["uid"]), fingerprint=str(raw["fingerprint"])
            )
        except (ValueError, KeyError, TypeError):
            return None

    def seal(self, purpose: str, payload: dict[str, Any]) -> str:
        """A signed (not encrypted) value for a short-lived cookie."""
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        return f"{body}.{self._sign((purpose + ':' + body).encode())}"

    def unseal(self, purpose: str, value: str | None) -> dict[str, Any] | None:
        if not value or value.count(".") != 1:
            return None
        body, signature = value.split(".")
        if not hmac.compare_digest(self._sign((purpose + ":" + body).encode()), signature):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def password_fingerprint(self, password_hash: str | None) -> str:
        """Changes when the password does, so a new password ends old sessions."""
        return self._sign(("pw:" + (password_hash or "")).encode())[:16]

    def csrf_token(self, sid: str) -> str:
        return self._sign(("csrf:" + sid).encode())

    def login_token(self, nonce: str) -> str:
        return self._sign(("login:" + nonce).encode())

    def check(self, expected: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(expected, given or "")


def new_session(uid: int, fingerprint: str) -> SessionData:
    return SessionData(sid=secrets.token_urlsafe(18), uid=uid, fingerprint=fingerprint)


class SessionCache(ShortCache[str, tuple[SessionState, dict[str, Any]]]):
    """Session rows and their users this process read in the last few seconds.

    Saves the per-request query for a busy reader.  Answers are at most ``ttl``
    seconds old (two while one request re-reads the row); a refusal is always
    checked against the database before it is acted on, and this process's own
    logouts drop the entry at once.
    """

    def __init__(self, ttl: float = SESSION_CACHE_SECONDS) -> None:
        super().__init__(ttl)


def cookie_is_secure(policy: bool | None, scheme: str) -> bool:
    """Secure when forced, or (policy unset) when the request came over HTTPS."""
    return policy if policy is not None else scheme == "https"


def _cookie_header(name: str, value: str, *, max_age: int, secure: bool) -> str:
    cookie: SimpleCookie = SimpleCookie()
    cookie[name] = value
    morsel = cookie[name]
    morsel["path"] = "/"
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    morsel["max-age"] = max_age
    if secure:
        morsel["secure"] = True
    return morsel.OutputString()


def set_cookie_header(name: str, value: str, *, max_age: int, secure: bool) -> str:
    return _cookie_header(name, value, max_age=max_age, secure=secure)


def clear_cookie_header(name: str, *, secure: bool) -> str:
    return _cookie_header(name, "", max_age=0, secure=secure)


class SessionCookieMiddleware:
    """Writes the session cookie a handler asked for (pure ASGI, cheap per request)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        codec: SessionCodec,
        max_age_seconds: int,
        secure_policy: bool | None,
    ) -> None:
        self.app = app
        self.codec = codec
        self.max_age = max_age_seconds
        self.secure_policy = secure_policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                secure = cookie_is_secure(self.secure_policy, scope.get("scheme", "http"))
                headers = MutableHeaders(scope=message)
                fresh: SessionData | None = state.get(STATE_SET)
                if fresh is not None:
                    headers.append(
                        "set-cookie",
                        set_cookie_header(
                            SESSION_COOKIE,
                            self.codec.encode(fresh),
                            max_age=self.max_age,
                            secure=secure,
                        ),
                    )
                elif state.get(STATE_CLEAR):
                    headers.append("set-cookie", clear_cookie_header(SESSION_COOKIE, secure=secure))
            await send(message)

        await self.app(scope, receive, send_with_cookie)
