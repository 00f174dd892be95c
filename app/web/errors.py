"""How refusals reach the browser: pages redirect or show a message, the API answers JSON."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from app.web.deps import CsrfFailed, Forbidden, NotAuthenticated

API_PREFIX = "/api/"
IDLE_REASON = "logged off after inactivity"


def wants_json(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX) or request.url.path in ("/openapi.json",)


def _not_authenticated(request: Request, exc: Exception) -> Response:
    reason = exc.reason if isinstance(exc, NotAuthenticated) else "login required"
    if wants_json(request):
        return JSONResponse({"detail": reason}, status_code=401)
    query = {"next": request.url.path}
    if reason == IDLE_REASON:
        query["reason"] = "idle"
    elif reason != "login required":
        query["reason"] = "expired"
    target = "/login?" + urlencode(query)
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _forbidden(request: Request, exc: Exception) -> Response:
    message = exc.message if isinstance(exc, Forbidden) else "forbidden"
    if wants_json(request):
        return JSONResponse({"detail": message}, status_code=403)
    return Response(message, status_code=403, media_type="text/plain")


def _csrf_failed(request: Request, exc: Exception) -> Response:
    message = "missing or wrong CSRF token; reload the page and try again"
    if wants_json(request):
        return JSONResponse({"detail": message}, status_code=403)
    return Response(message, status_code=403, media_type="text/plain")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NotAuthenticated, _not_authenticated)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(CsrfFailed, _csrf_failed)
