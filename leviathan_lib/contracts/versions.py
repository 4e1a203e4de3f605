"""Reading a versioned document that crossed a process or image boundary, with a named error for each way
it can be unusable.

Every document carries an integer version field (its major version: a change a reader of the old version
cannot read bumps it; see docs/architecture.md, "Contracts and versions"). A reader accepts the versions it
lists (the current one and, once there is one, the one before it) and refuses anything else by name, before
the model sees it: a newer document (its writer was upgraded first), a document too old, one that is cut short or not
JSON, one without its version, and one that does not validate (extra fields included: the models forbid
them, so a field a reader does not know is refused, never dropped unseen). Messages name fields, never the
values a document holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from leviathan_lib.core.errors import LeviathanError

Kind = Literal["version_unsupported", "truncated", "invalid", "too_large"]
M = TypeVar("M", bound=BaseModel)


class ContractError(LeviathanError, ValueError):
    """A document that cannot be read; ``code`` is the document's code for ``kind`` (e.g. ``result_truncated``)."""

    def __init__(self, code: str, kind: Kind, message: str) -> None:
        self.kind = kind
        super().__init__(code, message)


@dataclass(frozen=True)
class Reader(Generic[M]):
    """How one document is read: its model, version field, readable versions and error codes."""

    name: str
    model: type[M]
    version_field: str
    #: The versions read, oldest first; the last is the current one (what this side writes).
    readable: tuple[int, ...]
    codes: Mapping[Kind, str]
    #: What to do on each side of a version upgrade: version → function lifting a document of that version
    #: to the next (none yet: there is only version 1).
    upgrades: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)
    #: Keys the orchestrator adds to the document it stores (not part of the model), dropped on reading.
    annotations: frozenset[str] = frozenset()
    #: The largest document read (None: no bound); a bigger one is refused before it is parsed.
    max_bytes: int | None = None

    @property
    def current(self) -> int:
        return self.readable[-1]

    def fail(self, kind: Kind, message: str) -> ContractError:
        return ContractError(self.codes[kind], kind, f"{self.name}: {message}")

    def document(self, data: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
        """The JSON object of ``data``, or a ContractError saying it is cut short or not one."""
        if self.max_bytes is not None:
            size = len(json.dumps(dict(data))) if isinstance(data, Mapping) else len(data)
            if size > self.max_bytes:
                raise self.fail("too_large", f"the document is over {self.max_bytes} bytes: it is not read")
        if isinstance(data, Mapping):
            return dict(data)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):  # it stops mid-way
                raise self.fail("truncated", f"the document ends early ({len(text)} characters; cut short or "
                                             f"empty)") from None
            raise self.fail("invalid", f"not JSON: {exc.msg} at character {exc.pos}") from None
        if not isinstance(parsed, dict):
            raise self.fail("invalid", f"expected a JSON object, got {type(parsed).__name__}")
        return parsed

    def read(self, data: str | bytes | Mapping[str, Any]) -> M:
        """The model of ``data`` in the current version (an older readable version is lifted to it)."""
        doc = self.document(data)
        version = doc.get(self.version_field)
        if not isinstance(version, int) or isinstance(version, bool):
            raise self.fail("invalid", f"no integer {self.version_field!r}: not a version-{self.current} document")
        if version not in self.readable:
            newer = version > self.current
            side = "upgrade this reader first (newer writer)" if newer else "its writer is too old"
            raise self.fail("version_unsupported", f"{self.version_field} {version} is not readable here "
                                                   f"(reads {', '.join(map(str, self.readable))}): {side}")
        for step in range(version, self.current):
            doc = self.upgrades[step](doc)
        doc = {k: v for k, v in doc.items() if k not in self.annotations}
        try:
            return self.model.model_validate_json(json.dumps(doc))
        except ValidationError as exc:
            raise self.fail("invalid", "; ".join(f"{'.'.join(map(str, e['loc'])) or '(document)'}: {e['msg']}"
                                                 for e in exc.errors()[:10])) from None
