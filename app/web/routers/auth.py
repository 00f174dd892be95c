"""Login, logout and the keep-alive of the session."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.services import audit, oidc, web_sessions
from app.services.auth import LOGIN, LOGOUT, LoginPolicy, LoginRefused, authenticate
from app.web.deps import (
    ClientDep,
    CodecDep,
    DbDep,
    NowDep,
    SettingsDep,
    UserDep,
    get_session_cache,
    verify_csrf,
)
from app.web.sessions import (
    LOGIN_COOKIE,
    OIDC_COOKIE,
    STATE_CLEAR,
    STATE_SET,
    SessionData,
    cookie_is_secure,
    new_session,
)
from app.web.templating import render

router = APIRouter(tags=["auth"])
LOGIN_COOKIE_SECONDS = 3600
OIDC_COOKIE_SECONDS = 600
OIDC_PURPOSE = "oidc"
REASONS = {
    "idle": "You were logged off after a period of inactivity.",
    "expired": "Your session ended. Please log in again.",
    "logout": "You are logged out.",
}


def safe_next(target: str | None) -> str:
    """Only a local path (never another site) after login."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/worklist"


def _login_page(
    request: Request,
    *,
    settings: SettingsDep,
    codec: CodecDep,
    next_path: str,
    message: str | None,
    status_code: int = 200,
    retry_after: float | None = None,
) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(18)
    response = render(
        request,
        "login.html",
        {
            "login_token": codec.login_token(nonce),
            "next_path": next_path,
            "message": message,
            "oidc_enabled": bool(settings.oidc_issuer),
        },
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_COOKIE_SECONDS,
        httponly=True,
        samesite="lax",
        secure=cookie_is_secure(settings.cookie_secure, request.url.scheme),
    )
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(retry_after)))
    return response


@router.get("/login", include_in_schema=False)
def login_form(
    request: Request,
    settings: SettingsDep,
    codec: CodecDep,
    next: str | None = None,
    reason: str | None = None,
) -> Response:
    return _login_page(
        request,
        settings=settings,
        codec=codec,
        next_path=safe_next(next),
        message=REASONS.get(reason or ""),
    )


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    settings: SettingsDep,
    codec: CodecDep,
    db: DbDep,
    now: NowDep,
    client: ClientDep,
    username: Annotated[str, Form(max_length=128)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=512)] = "/worklist",
) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE)
    target = safe_next(next)
    if not nonce or not codec.check(codec.login_token(nonce), csrf_token):
        return _login_page(
            request,
            settings=settings,
            codec=codec,
            next_path=target,
            message="The login form expired. Please try again.",
            status_code=403,
        )
    try:
        user = authenticate(
            db,
            username=username,
            password=password,
            client_address=client,
            now=now,
            policy=LoginPolicy.from_settings(settings),
        )
    except LoginRefused as refused:
        db.commit()  # the failed attempt is an audit event and counts for the slow-down
        return _login_page(
            request,
            settings=settings,
            codec=codec,
            next_path=target,
            message=refused.message,
            status_code=429 if refused.retry_after else 401,
            retry_after=refused.retry_after,
        )
    _start_session(request, db, codec, user.id, user.password_hash, now=now, client=client)
    db.commit()
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(LOGIN_COOKIE)
    return response


@router.post("/logout", include_in_schema=False, dependencies=[Depends(verify_csrf)])
def logout(
    request: Request,
    user: UserDep,
    db: DbDep,
    now: NowDep,
    client: ClientDep,
) -> Response:
    data: SessionData = request.state.session
    key = web_sessions.session_key(data.sid)
    web_sessions.end_session(db, key, reason=web_sessions.ENDED_LOGOUT, now=now)
    audit.record(
        db,
        actor=user.username,
        action=LOGOUT,
        object_type="user",
        object_id=user.id,
        user_id=user.id,
        client_address=client,
    )
    db.commit()
    get_session_cache(request).drop(key)
    setattr(request.state, STATE_CLEAR, True)
    return RedirectResponse("/login?reason=logout", status_code=303)


def _start_session(
    request: Request,
    db: DbDep,
    codec: CodecDep,
    user_id: int,
    password_hash: str | None,
    *,
    now: NowDep,
    client: str | None,
) -> None:
    """A session row in the login's transaction; the middleware writes its cookie."""
    data = new_session(user_id, codec.password_fingerprint(password_hash))
    web_sessions.open_session(db, sid=data.sid, user_id=user_id, now=now, client_address=client)
    setattr(request.state, STATE_SET, data)


@router.get("/auth/oidc/login", include_in_schema=False)
def oidc_login(
    request: Request, settings: SettingsDep, codec: CodecDep, next: str | None = None
) -> Response:
    """Send the browser to the hospital's identity provider."""
    if not settings.oidc_issuer:
        return Response("single sign-on is not configured", status_code=404)
    try:
        provider = request.app.state.oidc_providers.get(settings.oidc_issuer)
    except oidc.OidcError as exc:
        return _login_page(
            request,
            settings=settings,
            codec=codec,
            next_path=safe_next(next),
            message=f"Single sign-on failed: {exc}",
            status_code=502,
        )
    url, pending = oidc.start(
        settings,
        provider,
        redirect_uri=str(request.url_for("oidc_callback")),
        next_path=safe_next(next),
    )
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        OIDC_COOKIE,
        codec.seal(OIDC_PURPOSE, pending.__dict__),
        max_age=OIDC_COOKIE_SECONDS,
        httponly=True,
        samesite="lax",
        secure=cookie_is_secure(settings.cookie_secure, request.url.scheme),
    )
    return response


@router.get("/auth/oidc/callback", include_in_schema=False, name="oidc_callback")
def oidc_callback(
    request: Request,
    settings: SettingsDep,
    codec: CodecDep,
    db: DbDep,
    now: NowDep,
    client: ClientDep,
    code: str = "",
    state: str = "",
) -> Response:
    """The provider's answer: check it, then log the matching user in."""
    sealed = codec.unseal(OIDC_PURPOSE, request.cookies.get(OIDC_COOKIE))
    next_path = safe_next(sealed.get("next_path") if sealed else None)
    try:
        if not settings.oidc_issuer:
            raise oidc.OidcError("single sign-on is not configured")
        if sealed is None or not code or not codec.check(str(sealed.get("state", "")), state):
            raise oidc.OidcError("the sign-on answer does not match this browser; try again")
        pending = oidc.Pending(**{k: str(v) for k, v in sealed.items()})
        provider = request.app.state.oidc_providers.get(settings.oidc_issuer)
        user = oidc.finish(
            db,
            settings,
            provider,
            code=code,
            pending=pending,
            redirect_uri=str(request.url_for("oidc_callback")),
            now=now.timestamp(),
        )
    except (oidc.OidcError, TypeError) as exc:
        audit.record(
            db,
            actor="-",
            action="auth.sso_failed",
            object_type="user",
            client_address=client,
            detail={"reason": str(exc)},
        )
        db.commit()
        response = _login_page(
            request,
            settings=settings,
            codec=codec,
            next_path=next_path,
            message=f"Single sign-on failed: {exc}",
            status_code=401,
        )
        response.delete_cookie(OIDC_COOKIE)
        return response
    user.last_login_at = now
    audit.record(
        db,
        actor=user.username,
        action=LOGIN,
        object_type="user",
        object_id=user.id,
        user_id=user.id,
        client_address=client,
        detail={"method": "oidc"},
    )
    _start_session(request, db, codec, user.id, user.password_hash, now=now, client=client)
    db.commit()
    response = RedirectResponse(next_path, status_code=303)
    response.delete_cookie(OIDC_COOKIE)
    return response
