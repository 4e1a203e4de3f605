"""The one parser of repository URLs: what git will be pointed at, classified or rejected.

Git decides by itself whether an argument is an option, a ``<transport>::`` helper (``ext::`` runs a
command), an scp-style ``user@host:path``, a URL or a local path. Two parsers that disagree on that
are how a config value meant as "a path" ends up as "a command", so every caller (config validation,
the worker contract, the forges, git auth, the repository reader) asks this module, and anything it
cannot classify unambiguously is refused. Pure: no git, no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

RepoUrlKind = Literal["https", "http", "ssh", "scp", "file", "local"]

#: ``<transport>::<address>`` makes git run ``git-remote-<transport>``; ``ext::`` runs any command.
_TRANSPORT_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
#: ``scheme://[userinfo@]host[:port][/path]`` (RFC 3986 authority; core parses it itself, without urllib).
_AUTHORITY_URL = re.compile(
    r"^[^:]+://(?:(?P<userinfo>[^@/]*)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\[\]]*)(?::(?P<port>[^/]*))?(?P<path>/.*)?$"
)
#: ``user@host:path`` (git's scp-like syntax); the user is required so ``name:path`` is never guessed.
_SCP = re.compile(
    r"^(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]):(?P<path>.+)$"
)
_HOST = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])$")
_SCHEMES: dict[str, RepoUrlKind] = {"https": "https", "http": "http", "ssh": "ssh", "file": "file"}


class RepoUrlError(ValueError):
    """The value is not a repository URL Leviathan will hand to git; the message says why."""


@dataclass(frozen=True)
class RepoUrl:
    """A classified repository URL. ``path`` is the repository path (the filesystem path when local)."""

    raw: str
    kind: RepoUrlKind
    path: str
    host: str | None = None
    port: int | None = None
    user: str | None = None

    @property
    def is_local(self) -> bool:
        """Read in place from the filesystem (a path or ``file://``), not fetched into a mirror."""
        return self.kind in ("file", "local")

    @property
    def origin(self) -> str | None:
        """``scheme://host[:port]/`` of an http(s) URL: the scope of ``http.<url>.*`` git config."""
        if self.kind not in ("https", "http"):
            return None
        return f"{self.kind}://{self.host}{f':{self.port}' if self.port else ''}/"

    @property
    def owner_name(self) -> tuple[str, str] | None:
        """``(owner, repo)`` from the last two path segments of a remote URL (``.git`` dropped)."""
        if self.is_local:
            return None
        segments = [s for s in self.path.split("/") if s]
        if len(segments) < 2 or not segments[-1].removesuffix(".git"):
            return None
        return segments[-2], segments[-1].removesuffix(".git")


def _check_characters(url: str) -> None:
    if not url:
        raise RepoUrlError("must not be empty")
    if url.startswith("-"):
        raise RepoUrlError("must not start with '-' (git would read it as an option)")
    if _TRANSPORT_HELPER.match(url):
        raise RepoUrlError("'<transport>::' addresses (such as ext:: or fd::) are not allowed")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise RepoUrlError("must not contain control characters")
    if any(c.isspace() for c in url):
        raise RepoUrlError("must not contain whitespace")


def _parse_scheme_url(url: str, scheme: str) -> RepoUrl:
    kind = _SCHEMES.get(scheme.lower())
    if kind is None:
        raise RepoUrlError(f"unsupported scheme {scheme!r}: expected https://, http://, ssh:// or file://")
    if "?" in url or "#" in url:
        raise RepoUrlError("must not contain a query or a fragment")
    parts = _AUTHORITY_URL.match(url)
    if parts is None:
        raise RepoUrlError("not a valid URL: expected scheme://host/path")
    userinfo, host, path = parts["userinfo"], parts["host"], parts["path"] or ""
    if userinfo is not None and (":" in userinfo or kind in ("https", "http")):
        raise RepoUrlError("must not contain credentials; they come from the forge connection")
    if kind == "file":
        if userinfo is not None or parts["port"] is not None or host not in ("", "localhost"):
            raise RepoUrlError("a file:// URL must name a local path (file:///path)")
        if not path:
            raise RepoUrlError("a file:// URL must name an absolute path")
        return RepoUrl(raw=url, kind=kind, path=path)
    port = parts["port"]
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise RepoUrlError(f"invalid port {port!r}")
    if not _HOST.match(host):
        raise RepoUrlError("must name a host (letters, digits, '.' and '-', not starting with '-')")
    if not path.strip("/"):
        raise RepoUrlError("must name a repository path after the host")
    return RepoUrl(raw=url, kind=kind, path=path, host=host, port=int(port) if port else None,
                   user=userinfo or None)  # fmt: skip


def parse_repo_url(url: str) -> RepoUrl:
    """Classify ``url`` or raise :class:`RepoUrlError` saying what is wrong with it."""
    _check_characters(url)
    scheme = _SCHEME.match(url)
    if scheme:
        return _parse_scheme_url(url, scheme["scheme"])
    scp = _SCP.match(url)
    if scp:
        path = scp["path"]
        if path.startswith("-"):
            raise RepoUrlError("the path of an scp-style URL must not start with '-'")
        return RepoUrl(raw=url, kind="scp", path=path, host=scp["host"], user=scp["user"])
    if ":" in url.split("/", 1)[0]:
        # git would read this as ssh to a host; anything meant as a path must not look like that.
        raise RepoUrlError("ambiguous: use scheme://host/path, user@host:path or a filesystem path")
    if "@" in url.split("/", 1)[0]:
        raise RepoUrlError("looks like a URL with credentials; use scheme://host/path or a filesystem path")
    return RepoUrl(raw=url, kind="local", path=url)


def check_repo_url(url: str) -> str:
    """``url`` unchanged if :func:`parse_repo_url` accepts it (for pydantic validators)."""
    parse_repo_url(url)
    return url
