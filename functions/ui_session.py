"""The web UI's session: a person signs in once with an ID token and the
browser then shows a session token from an HttpOnly cookie.

Sign-in is one POST of `credential`, an ID token verified by the one path
every caller goes through (`functions.auth`, `functions.id_tokens`): in
production the token Google Sign-In posts (its redirect mode, with its
`g_csrf_token` double-submit cookie), locally the one `swarming local up`
puts in its link's fragment (which never reaches a server's log), posted by
the sign-in page. Each credential signs in once (`Store.use_once`), so a
link is one-time. The session token is signed by the service
(`signed_tokens.SESSION`, 12 hours) and names the person; the cookie is
HttpOnly, SameSite=Lax, Secure over https, and only sent to `/ui`.

A cookie travels with any request the browser makes, so a POST is signed
in only when it comes from a page of ours (Sec-Fetch-Site or Origin): a
form on another site cannot cancel a task as the person.
"""

import datetime
import hashlib
import urllib.parse

import flask

from functions import http, id_tokens, service, signed_tokens
from functions.errors import BadRequest, Forbidden, Unauthorized, Unavailable
from functions.permissions import Kind

COOKIE = "swarming_session"
SESSION_TTL = datetime.timedelta(hours=12)
#: How long a used credential is remembered: longer than any ID token lives.
USED_TTL = datetime.timedelta(days=1)
GOOGLE_CSRF = "g_csrf_token"


def token(request: flask.Request) -> str | None:
    """The session token the request shows, if it may use one."""
    cookie = request.cookies.get(COOKIE)
    if not cookie or (request.method != "GET" and not same_origin(request)):
        return None
    return cookie


def same_origin(request: flask.Request) -> bool:
    """Whether a page of this site sent the request."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("Origin")
    return origin is not None and origin == _origin(http.base_url(request))


def ui_url(request: flask.Request) -> str:
    return http.base_url(request) + "/ui"


def sign_in(request: flask.Request) -> flask.Response:
    """POST `credential` (and `next`, a path of the UI) → the session cookie,
    and a redirect to `next`."""
    if not same_origin(request) and not _google_csrf(request):
        raise Forbidden("sign in from this site's sign-in page")
    credential = request.form.get("credential", "")
    if not id_tokens.looks_like_jwt(credential):
        raise BadRequest("credential: not an ID token")
    svc = service.current()
    server_url = svc.settings.functions_url.rstrip("/") or http.base_url(request)
    caller = svc.auth.authenticate(f"Bearer {credential}", http.audiences(server_url, "ui", svc.service_config.get()))
    if caller.kind != Kind.PERSON:
        raise Forbidden("only people sign in to the web UI")
    if svc.signed_tokens is None:
        raise Unavailable("no token secret: set SWARMING_TOKEN_SECRET")
    now = svc.clock()
    if not svc.store.use_once(hashlib.sha256(credential.encode()).hexdigest(), now + USED_TTL):
        raise Unauthorized("this sign-in link was used already: sign in again")
    session = svc.signed_tokens.mint(signed_tokens.SESSION, {"sub": caller.identity}, now + SESSION_TTL)
    response = flask.redirect(_next(request), 303)
    response.set_cookie(COOKIE, session, max_age=int(SESSION_TTL.total_seconds()), path=_cookie_path(request),
                        secure=_https(request), httponly=True, samesite="Lax")
    return response


def sign_out(request: flask.Request) -> flask.Response:
    response = flask.redirect(ui_url(request) + "/signin", 303)
    response.delete_cookie(COOKIE, path=_cookie_path(request), secure=_https(request), httponly=True,
                           samesite="Lax")
    return response


def _next(request: flask.Request) -> str:
    """Where to go once signed in: a path of the UI only, never another site."""
    wanted = request.form.get("next", "")
    base = ui_url(request)
    if wanted.startswith("/") and not wanted.startswith("//") and "\\" not in wanted:
        return base + wanted
    return base + "/"


def _google_csrf(request: flask.Request) -> bool:
    cookie = request.cookies.get(GOOGLE_CSRF)
    return bool(cookie) and cookie == request.form.get(GOOGLE_CSRF)


def _cookie_path(request: flask.Request) -> str:
    return urllib.parse.urlsplit(ui_url(request)).path


def _https(request: flask.Request) -> bool:
    return http.base_url(request).startswith("https://")


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
