"""Who may call Spider: the Airflow auth manager decides who the caller is, this module what they may do.

Plugin routes are not authenticated by Airflow on their own, so every route except ``/health`` declares
a dependency here. Switching autonomy is admin-only; Airflow has no generic "admin" permission
(``requires_access_configuration("PUT")`` also admits the ``op`` role), so the role is checked directly
for the auth managers Leviathan supports, and any other user is refused (fail closed).

A change authenticated by the Airflow UI's session cookie must also come from the same origin: a browser
sends that cookie with requests other sites trigger, so the cookie alone does not show the user meant it.
A bearer token is never sent implicitly, so token callers (scripts, the CLI) need no Origin.

The view's HTML forms also carry a CSRF token (:func:`csrf_token`): an HMAC, under ``[api] secret_key``, of
the credential that authenticated the page, so it is bound to that login and useless to anyone else.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any
from urllib.parse import urlsplit

from airflow.api_fastapi.core_api.security import GetUserDep, bearer_scheme, get_user
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials


def is_admin(user: Any) -> bool:
    """SimpleAuthManager users carry ``role``; FAB users carry ``roles`` objects named ``Admin``."""
    role = getattr(user, "role", None)
    if isinstance(role, str):
        return role.strip().upper() == "ADMIN"
    roles = getattr(user, "roles", None) or []
    return any(getattr(r, "name", None) == "Admin" for r in roles)


def username(user: Any) -> str:
    name = user.get_name() if hasattr(user, "get_name") else getattr(user, "username", None)
    return str(name or "unknown")


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def _origin(url: str) -> str | None:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def own_origins(request: Request) -> set[str]:
    """This server's origin as the request reached it, and as ``[api] base_url`` says (behind a proxy)."""
    from airflow.configuration import conf

    origins = {f"{request.url.scheme}://{request.url.netloc}".lower()}
    configured = _origin(conf.get("api", "base_url", fallback="") or "")
    return origins | ({configured} if configured else set())


def require_same_origin(request: Request, credentials: BearerCredentials) -> None:
    """Refuse a cookie-authenticated change a page on another origin could have triggered (CSRF)."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return  # what get_user authenticates by: an explicit token, which no other site can attach
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() != "same-origin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"cross-origin change refused (Sec-Fetch-Site: {fetch_site})")
    origin = request.headers.get("origin")
    if origin is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "a change authenticated by cookie needs an Origin header from this server's origin")
    if _origin(origin) not in own_origins(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-origin change refused (Origin does not match)")


def require_admin(request: Request, user: GetUserDep, credentials: BearerCredentials) -> Any:
    if not is_admin(user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only Airflow admins may change Leviathan's autonomy")
    require_same_origin(request, credentials)
    return user


def metrics_public() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("leviathan", "metrics_public", fallback=False)


async def metrics_access(request: Request, credentials: BearerCredentials) -> None:
    """``/metrics`` needs an authenticated user unless ``[leviathan] metrics_public`` is true."""
    if not metrics_public():
        await get_user(request, None, credentials)


AdminUser = Annotated[Any, Depends(require_admin)]

#: The hidden form field that carries :func:`csrf_token`.
CSRF_FIELD = "csrf_token"


def _credential(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """What authenticated this request: the bearer token, else the Airflow UI's ``_token`` cookie."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return credentials.credentials
    return request.cookies.get("_token", "")


def _secret() -> bytes:
    from airflow.configuration import conf

    return (conf.get("api", "secret_key", fallback="") or "").encode()


def csrf_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The form token for this login ("" when there is no secret key or credential: every form is refused)."""
    secret, credential = _secret(), _credential(request, credentials)
    if not secret or not credential:
        return ""
    return hmac.new(secret, b"leviathan-view-csrf\0" + credential.encode(), hashlib.sha256).hexdigest()


def require_csrf(request: Request, credentials: HTTPAuthorizationCredentials | None, submitted: str) -> None:
    expected = csrf_token(request, credentials)
    if not expected or not hmac.compare_digest(expected, submitted or ""):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or invalid CSRF token: reload the page and retry")
