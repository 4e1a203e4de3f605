"""The package layers stay what ``docs/architecture.md`` and the package docstrings say they are.

The import-linter contract in ``pyproject.toml`` is the source of truth; the diagram (Mermaid and text),
each subpackage's "May import" line and the contract must list the same packages in the same order.
"""

from __future__ import annotations

import ast
import pkgutil
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

import leviathan_lib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "leviathan_lib"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def contract_layers() -> list[set[str]]:
    """The layers contract, top to bottom, as sets of subpackage names (``cli``, not ``leviathan_lib.cli``)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    contracts = [c for c in config["contracts"] if c["type"] == "layers"]
    assert len(contracts) == 1, "expected exactly one layers contract in [tool.importlinter]"
    layers = []
    for layer in contracts[0]["layers"]:
        names = {name.strip() for name in layer.split("|")}
        assert all(n.startswith("leviathan_lib.") for n in names), layer
        layers.append({n.removeprefix("leviathan_lib.") for n in names})
    return layers


def subpackages() -> set[str]:
    return {m.name for m in pkgutil.iter_modules(leviathan_lib.__path__) if m.ispkg}


def layer_of() -> dict[str, int]:
    return {name: i for i, layer in enumerate(contract_layers()) for name in layer}


def mermaid_layers(text: str) -> tuple[list[set[str]], list[tuple[str, str]], list[str]]:
    """The ``graph TD`` block's subgraphs (in order, with their nodes), their edges, and the subgraph ids."""
    blocks = re.findall(r"```mermaid\n(graph TD\n.*?)```", text, re.S)
    assert len(blocks) == 1, "architecture.md must hold exactly one ```mermaid graph TD block (the layers)"
    subgraphs: list[tuple[str, set[str]]] = []
    edges: list[tuple[str, str]] = []
    current: set[str] | None = None
    for raw in blocks[0].splitlines()[1:]:
        line = raw.strip()
        if match := re.fullmatch(r'subgraph (\w+)\[".*"\]', line):
            current = set()
            subgraphs.append((match.group(1), current))
        elif line == "end":
            current = None
        elif current is not None:
            assert re.fullmatch(r"\w+", line), f"a subgraph holds one package name per line, not {line!r}"
            current.add(line)
        elif match := re.fullmatch(r"(\w+)(?:\[.*\])? --> (\w+)", line):
            edges.append((match.group(1), match.group(2)))
        else:
            assert not line, f"unexpected line in the layers diagram: {line!r}"
    return [nodes for _, nodes in subgraphs], edges, [sid for sid, _ in subgraphs]


def text_layers(text: str) -> list[set[str]]:
    """The ``layer N   a | b   description`` lines of the text rendering (columns two or more spaces apart)."""
    found = re.findall(r"^ +layer (\d+) {2,}(.+?)(?: {2,}.*)?$", text, re.M)
    assert [int(n) for n, _ in found] == list(range(1, len(found) + 1)), "text layers must be numbered 1, 2, ..."
    return [{name.strip() for name in names.split("|")} for _, names in found]


def test_every_subpackage_is_in_the_layers_contract():
    layered = set().union(*contract_layers())
    assert layered == subpackages(), (
        f"not in the layers contract: {sorted(subpackages() - layered)}; "
        f"in the contract but no package: {sorted(layered - subpackages())}")


def test_the_mermaid_diagram_is_the_contract():
    layers, edges, ids = mermaid_layers(ARCHITECTURE.read_text(encoding="utf-8"))
    assert layers == contract_layers()
    chain = list(zip(ids, ids[1:], strict=False))
    layer_edges = [e for e in edges if e[0] in ids]
    assert layer_edges == chain, "the layer subgraphs must be chained top to bottom, one edge each, in order"
    thin = {src: dst for src, dst in edges if src not in ids}
    assert thin.keys() == {"dags_file", "entry_points"}, "only the one-line DAG file and the entry points sit on top"
    assert all(dst in subpackages() for _, dst in edges if _ not in ids)


def test_the_text_diagram_is_the_contract():
    assert text_layers(ARCHITECTURE.read_text(encoding="utf-8")) == contract_layers()


def test_the_package_table_has_one_row_per_subpackage():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(\w+)` \|", text[text.index("| package |"):], re.M))
    assert subpackages() <= rows


def package_inits() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE)


def may_import(docstring: str, where: Path) -> set[str]:
    """The subpackages named (in double backticks) in the docstring's "May import" clause."""
    match = re.search(r"[Mm]ay import(.*?)(?:;|\.(?:\s|$))", docstring, re.S)
    assert match, f"{where}: the docstring needs a 'May import: ...' line"
    names = re.findall(r"``([\w.]+)``", match.group(1))
    return {n.removeprefix("leviathan_lib.").split(".")[0] for n in names}


@pytest.mark.parametrize("init", package_inits(), ids=lambda p: str(p.parent.relative_to(PACKAGE)))
def test_package_docstring_names_only_lower_layers(init: Path):
    docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
    assert docstring, f"{init}: no docstring"
    assert "TODO docstring" not in init.read_text(encoding="utf-8")
    top = init.parent.relative_to(PACKAGE).parts[0]
    layers = layer_of()
    named = may_import(docstring, init)
    assert named <= set(layers), f"{init}: names unknown packages {sorted(named - set(layers))}"
    nested = init.parent.parent != PACKAGE
    allowed = {n for n in layers if layers[n] > layers[top]} | ({top} if nested else set())
    assert named <= allowed, f"{init}: may not import {sorted(named - allowed)} (same or higher layer)"


def test_no_placeholder_docstrings():
    offenders = [str(p) for p in PACKAGE.rglob("__init__.py") if "TODO docstring" in p.read_text(encoding="utf-8")]
    assert not offenders


def test_import_contracts_are_kept():
    lint = ROOT / ".venv" / "bin" / "lint-imports"
    assert lint.exists(), f"{lint} is missing: install the test extras (scripts/bootstrap.sh)"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(ROOT)}
    proc = subprocess.run([str(lint)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = re.search(r"Contracts: (\d+) kept, (\d+) broken\.", proc.stdout)
    assert counts, proc.stdout
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert (int(counts.group(1)), int(counts.group(2))) == (len(config["contracts"]), 0)


def test_the_package_table_says_what_the_docstrings_say():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    table = text[text.index("| package |"):].split("\n\n")[0]
    rows = re.findall(r"^\| `(\w+)` \|.*\| (.*) \|$", table, re.M)
    assert {name for name, _ in rows} == subpackages()
    for name, may in rows:
        clause = re.split(r";|\.(?:\s|$)", may)[0]
        in_table = {n.split(".")[0] for n in re.findall(r"`([\w.]+)`", clause)}
        init = PACKAGE / name / "__init__.py"
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert in_table == may_import(docstring, init), f"architecture.md's row for {name} and {init} disagree"
