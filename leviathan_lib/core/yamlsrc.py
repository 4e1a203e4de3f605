"""Strict YAML loading with line numbers for error messages.

Every file Leviathan reads from a target repository or an operator (backlog, target config, recipes) goes
through :class:`StrictLoader`: YAML 1.2 booleans only (``yes``/``on`` stay strings, so a strict ``bool``
field rejects them), and no anchors, aliases, merge keys or duplicate mapping keys. Those are refused while
composing, before anything is expanded, so an alias bomb costs one parse of its few hundred bytes; and a
duplicate key can no longer silently override the first. Line numbers for other problems are looked up
only when there is one to report.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from leviathan_lib.core.errors import Problem, ValidationFailed

_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: YAML 1.1 boolean words that YAML 1.2 (and so :class:`StrictLoader`) reads as strings.
_YAML11_BOOLS = {"yes": "true", "y": "true", "on": "true", "no": "false", "n": "false", "off": "false"}


class StrictYAMLError(yaml.MarkedYAMLError):
    """A construct Leviathan's files may not use (anchor, alias, merge key, duplicate key)."""


def _refuse(problem: str, mark: Any) -> StrictYAMLError:
    return StrictYAMLError(problem=problem, problem_mark=mark)


class _Yaml12Resolver(Resolver):
    """YAML 1.1's resolver with the YAML 1.2 core schema's booleans: only true/True/TRUE/false/False/FALSE."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
        for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    }


_Yaml12Resolver.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _StrictComposer(Composer):
    """Refuses anchors and aliases as they are composed (nothing is ever expanded)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        events: Any = self  # the parser half of the loader supplies the event methods
        if events.check_event(yaml.AliasEvent):
            event = events.get_event()
            raise _refuse(f"YAML aliases (*{event.anchor}) are not allowed; write the value out", event.start_mark)
        event = events.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise _refuse(f"YAML anchors (&{event.anchor}) are not allowed", event.start_mark)
        return super().compose_node(parent, index)


class _StrictConstructor(SafeConstructor):
    """Refuses duplicate mapping keys (YAML says keys are unique; PyYAML keeps the last) and merge keys."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    raise _refuse("YAML merge keys (<<) are not allowed", key_node.start_mark)
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    raise _refuse(f"a mapping key must be a scalar, got {key!r}", key_node.start_mark) from None
                if first is not None:
                    raise _refuse(f"duplicate key {key!r} (first at line {first})", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_CParser: Any
try:
    from yaml._yaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None


if _CParser is not None:

    class StrictLoader(_StrictComposer, _CParser, _StrictConstructor, _Yaml12Resolver):  # type: ignore[misc]
        """libyaml's parser (fast) under the strict composer and constructor."""

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            Composer.__init__(self)
            _StrictConstructor.__init__(self)
            _Yaml12Resolver.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class StrictLoader(  # type: ignore[no-redef]
        yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, _StrictComposer, _StrictConstructor,
        _Yaml12Resolver,
    ):
        """The pure-Python parser under the strict composer and constructor."""

        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            Composer.__init__(self)
            _StrictConstructor.__init__(self)
            _Yaml12Resolver.__init__(self)


def decode_utf8(data: bytes, source: str) -> str:
    """Strict UTF-8 (a file is never decoded lossily): a :class:`ValidationFailed` naming the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = Problem(source, "", f"cannot read file: not valid UTF-8 at byte {exc.start}")
        raise ValidationFailed([problem]) from None


def _run(text: str, step: Callable[[Any], Any]) -> Any:
    """What ``yaml.load``/``yaml.compose`` do, with :class:`StrictLoader` (typed, and no Loader choice)."""
    loader = StrictLoader(text)
    try:
        return step(loader)
    finally:
        loader.dispose()


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text strictly; any problem becomes a :class:`ValidationFailed` naming file and line."""
    try:
        return _run(text, lambda loader: loader.get_single_data())
    except StrictYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ValidationFailed([Problem(source, "", str(exc.problem), line)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        detail = exc.problem or str(exc)
        raise ValidationFailed([Problem(source, "", f"invalid YAML: {detail}", line)]) from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        raise ValidationFailed([Problem(source, "", f"invalid YAML: {exc}")]) from None


def _compose(text: str) -> yaml.Node | None:
    try:
        node: yaml.Node | None = _run(text, lambda loader: loader.get_single_node())
        return node
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


#: A 1-based line lookup by location (see :func:`line_finder`).
LineFinder = Callable[[Sequence[str | int]], int | None]


def line_finder(text: str) -> LineFinder:
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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'max_prs_per_hour'?"`` for the closest of ``choices``, or ``""`` when none is close."""
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def yaml11_bool_hint(value: object) -> str | None:
    """The fix for a YAML 1.1 boolean word (``yes``, ``Off``...) where a boolean is expected, or None.

    YAML 1.2 reads those words as strings, so the strict ``bool`` fields reject them; saying which
    literal to write beats "Input should be a valid boolean".
    """
    fix = _YAML11_BOOLS.get(value.lower()) if isinstance(value, str) else None
    return f"expected true or false; write {fix} (YAML 1.2)" if fix else None
