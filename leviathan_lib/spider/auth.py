"""Who may call Spider: the Airflow auth manager decides who the caller is, this module what they may do.

Plugin routes are not authenticated by Airflow on their own, so every route except ``/health`` declares
a dependency here. Switching autonomy is admin-only; Airflow has no generic "admin" permission
(``requires_access_configuration("PUT")`` also admits the ``op`` role), so the role is checked directly
for the auth managers Leviathan supports, and any other user is refused (fail closed).
"""

from __future__ import annotations

from typing import Annotated, Any

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


def require_admin(user: GetUserDep) -> Any:
    if not is_admin(user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only Airflow admins may change Leviathan's autonomy")
    return user


def metrics_public() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("leviathan", "metrics_public", fallback=False)


async def metrics_access(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> None:
    """``/metrics`` needs an authenticated user unless ``[leviathan] metrics_public`` is true."""
    if not metrics_public():
        await get_user(request, None, credentials)


AdminUser = Annotated[Any, Depends(require_admin)]
