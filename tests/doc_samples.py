"""The quickstart's sample outputs, compared with a real run (tests/e2e/test_scheduler.py runs one).

A fenced block right after a ``<!-- output: KIND -->`` line is a sample:

- ``demo``: lines that ``leviathan demo`` prints on a fresh folder, found as consecutive lines of its output;
- ``console``: a transcript: each ``$ command`` is run in the demo's environment and must print exactly
  the lines that follow it;
- ``plan-log``: Leviathan's lines in the ``plan`` task log of the newest run.

In a sample, ``…`` alone on a line stands for any number of lines and inside a line for any text; a run
of two or more spaces for any run of spaces (columns). Times and hex ids (shas, task hashes) stand for
any value of their shape, and the doc's demo folder and port (:data:`DOC_DIR`, :data:`DOC_PORT`) for the
real ones. The real values found where the doc shows a time or an id translate the later commands (a
run id in ``evidence --cycle RUN_ID``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

#: The demo folder and port the quickstart's session uses.
DOC_DIR, DOC_PORT = "/tmp/docs2", "18125"

MARKED = re.compile(r"^(?P<indent> *)<!-- output: (?P<kind>[\w-]+) -->\n"
                    r"(?P=indent)```\w*\n(?P<body>.*?)\n(?P=indent)```", re.M | re.S)
TIME = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?(?:Z|[+-]\d\d:\d\d)?"
HEX = r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,64}\b"
#: What varies from run to run, in the doc's text: a time, or a hex id (with a digit and a letter).
VOLATILE = re.compile(rf"(?P<time>{TIME})|(?P<hex>{HEX})|(?P<spaces>  +)|(?P<any>…)")


@dataclass(frozen=True)
class Sample:
    kind: str
    text: str
    line: int  # in the doc, for messages


def samples(doc: Path) -> list[Sample]:
    """The marked blocks of ``doc``, in order, their indentation removed."""
    text = doc.read_text(encoding="utf-8")
    found = []
    for m in MARKED.finditer(text):
        indent = len(m["indent"])
        body = "\n".join(line[indent:] for line in m["body"].splitlines())
        found.append(Sample(m["kind"], body, text.count("\n", 0, m.start()) + 1))
    return found


def transcript(sample: Sample) -> list[tuple[str, str]]:
    """A console sample's ``(command, expected output)`` pairs."""
    steps: list[tuple[str, list[str]]] = []
    for line in sample.text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
        else:
            raise AssertionError(f"line {sample.line}: a console sample starts with a `$ ` command: {line!r}")
    return [(command, "\n".join(output)) for command, output in steps]


@dataclass
class Matcher:
    """Matches samples against real text; remembers which real value each doc time or id stood for."""

    real_dir: str
    real_port: str
    bound: dict[str, str] = field(default_factory=dict)

    def _pattern(self, sample: str) -> tuple[str, list[str]]:
        sample = sample.replace(DOC_DIR, self.real_dir).replace(DOC_PORT, self.real_port)
        parts, tokens = [], []
        for line in sample.splitlines():
            if line.strip() == "…":
                parts.append(r"(?:.*\n)*?")
                continue
            pos, line = 0, line.rstrip()
            for m in VOLATILE.finditer(line):
                parts.append(re.escape(line[pos:m.start()]))
                pos = m.end()
                if m["any"]:
                    parts.append(".*?")
                elif m["spaces"]:
                    parts.append(" +")
                else:
                    tokens.append(m[0])
                    parts.append(f"({TIME})" if m["time"] else f"([0-9a-f]{{{len(m[0])}}})")
            parts.append(re.escape(line[pos:]) + r"\n")
        return "".join(parts), tokens

    def match(self, sample: Sample, real: str, *, whole: bool) -> None:
        """Assert ``sample`` matches all of ``real`` (``whole``) or consecutive lines of it; bind its values."""
        body, tokens = self._pattern(sample.text)
        real = "".join(f"{line.rstrip()}\n" for line in real.splitlines())
        found = re.fullmatch(body, real) if whole else re.search(r"(?m)^" + body, real)
        if found is None:
            diff = "\n".join(difflib.unified_diff(sample.text.splitlines(), real.splitlines(), "doc", "real",
                                                  lineterm=""))
            raise AssertionError(f"the {sample.kind} sample at docs line {sample.line} does not match the real "
                                 f"output:\n{diff}")
        for token, value in zip(tokens, found.groups(), strict=True):
            self.bound.setdefault(token, value)

    def command(self, command: str) -> str:
        """A doc command with the real folder, port and the values bound so far."""
        command = command.replace(DOC_DIR, self.real_dir).replace(DOC_PORT, self.real_port)
        for token, value in sorted(self.bound.items(), key=lambda kv: -len(kv[0])):
            command = command.replace(token, value)
        return command
