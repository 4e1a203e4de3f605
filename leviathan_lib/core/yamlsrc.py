"""Safe YAML loading with line numbers for error messages.

Line numbers are looked up only when there is a problem to report, so the fast path is a single
``safe_load`` with the C loader when available.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import yaml

from leviathan_lib.core.errors import Problem, ValidationFailed

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error becomes a :class:`ValidationFailed` naming file and line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - CSafeLoader/SafeLoader only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        detail = exc.problem or str(exc)
        raise ValidationFailed([Problem(source, "", f"invalid YAML: {detail}", line)]) from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        raise ValidationFailed([Problem(source, "", f"invalid YAML: {exc}")]) from None


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_Loader)  # noqa: S506 - CSafeLoader/SafeLoader only
    except (yaml.YAMLError, RecursionError, ValueError):
        return None


def _line_in(node: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    line = key.start_mark.line + 1
                    node = value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def line_of(text: str, loc: Sequence[str | int]) -> int | None:
    """Best-effort 1-based line of the node at ``loc`` (mapping keys and sequence indexes)."""
    return _line_in(_compose(text), loc)


def line_finder(text: str) -> Callable[[Sequence[str | int]], int | None]:
    """``line_of`` for many locations in one text: composed once, at the first lookup.

    Reporting k problems in a large file then costs one composition, not k (no quadratic error path).
    """
    composed: list[yaml.Node | None] = []

    def find(loc: Sequence[str | int]) -> int | None:
        if not composed:
            composed.append(_compose(text))
        return _line_in(composed[0], loc)

    return find


def field_name(loc: Sequence[str | int]) -> str:
    """Render a pydantic ``loc`` as ``tasks[2].ready``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
