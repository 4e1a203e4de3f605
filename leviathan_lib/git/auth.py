"""Git credentials for HTTPS remotes without putting them in a URL, an argv or a config file.

The token travels as an ``http.<origin>/.extraHeader`` set through git's environment-only config
(``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``, git >= 2.31). So it never shows in
``ps`` output, in ``.git/config``, in a remote URL that git echoes into errors, or in a reflog; and the
header is scoped to the repository's origin, so a redirect to another host never receives it.
"""

from __future__ import annotations

import base64

from leviathan_lib.git.urls import parse_repo_url


def origin_of(url: str) -> str:
    """``scheme://host[:port]/`` of an HTTP(S) URL: the scope git matches ``http.<url>.*`` keys against.

    ValueError (a :class:`~leviathan_lib.git.urls.RepoUrlError`) for anything else, credentials included.
    """
    origin = parse_repo_url(url).origin
    if origin is None:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return origin


def basic_auth_value(token: str) -> str:
    """The ``Authorization`` value GitHub's git endpoints accept for PATs and App installation tokens."""
    return "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()


def extra_header_env(url: str, token: str) -> dict[str, str]:
    """Environment making git send the token to ``url``'s origin only, as an HTTP header."""
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"http.{origin_of(url)}.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: {basic_auth_value(token)}",
    }
