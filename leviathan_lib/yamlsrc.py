"""Safe YAML loading with line numbers for error messages.

Line numbers are looked up only when there is a problem to report, so the fast path is a single
``safe_load`` with the C loader when available.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from leviathan_lib.errors import Problem, ValidationFailed

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


def line_of(text: str, loc: Sequence[str | int]) -> int | None:
    """Best-effort 1-based line of the node at ``loc`` (mapping keys and sequence indexes)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
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


def field_name(loc: Sequence[str | int]) -> str:
    """Render a pydantic ``loc`` as ``tasks[2].ready``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
