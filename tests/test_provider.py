"""The provider info declares every ``[leviathan]`` option the code reads, with the code's defaults, and the
configuration docs describe each one."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import jsonschema

import leviathan_lib
from leviathan_lib.core.limits import CAP_OPTIONS, AttemptLimits
from leviathan_lib.orchestrator.dag_factory import DEPLOYMENT_DEFAULT_KEYS
from leviathan_lib.orchestrator.deadline import DEFAULT_MARGIN_SECONDS
from leviathan_lib.provider import CONFIG, get_provider_info

PACKAGE = Path(leviathan_lib.__file__).resolve().parent
DOCS = PACKAGE.parent / "docs" / "configuration.md"
#: Reads whose option name is a variable, and the tuple or mapping of names it iterates.
NAME_SETS = {"CAP_OPTIONS": list(CAP_OPTIONS), "DEPLOYMENT_DEFAULT_KEYS": list(DEPLOYMENT_DEFAULT_KEYS)}
DECLARED = CONFIG["leviathan"]["options"]


def _reads() -> dict[str, list[str]]:
    """Option → the files reading it through ``conf.get*("leviathan", …)``; a variable option name must come
    from a comprehension over one of :data:`NAME_SETS`."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        loops = {id(node): node for node in ast.walk(tree) if isinstance(node, ast.comprehension)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr.startswith("get") and len(node.args) >= 2
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value == "leviathan"):
                continue
            key = node.args[1]
            if isinstance(key, ast.Constant):
                names = [key.value]
            else:
                sources = [ast.unparse(c.iter) for c in loops.values() if ast.unparse(c.target) == ast.unparse(key)]
                assert sources and sources[0] in NAME_SETS, (
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: [leviathan] option {ast.unparse(key)} "
                    f"comes from {sources or 'nowhere'}; add its name set to NAME_SETS in tests/test_provider.py")
                names = NAME_SETS[sources[0]]
            for name in names:
                found.setdefault(name, []).append(str(path.relative_to(PACKAGE.parent)))
    return found


def test_every_option_the_code_reads_is_declared_and_nothing_else():
    reads = _reads()
    assert {k: v for k, v in reads.items() if k not in DECLARED} == {}, "declare these in leviathan_lib/provider.py"
    assert sorted(set(DECLARED) - set(reads)) == [], "declared in provider.py but never read"


def test_every_declared_option_is_documented_in_configuration_md():
    rows = [line for line in DOCS.read_text(encoding="utf-8").splitlines() if line.startswith("| `[leviathan]`")]
    missing = [name for name in DECLARED if not any(re.search(rf"`{name}\b", row) for row in rows)]
    assert missing == [], f"docs/configuration.md has no [leviathan] row naming {missing}"
    for name, option in DECLARED.items():
        assert option["description"].strip(), name


def test_declared_defaults_are_the_codes_defaults():
    limits = AttemptLimits()
    for option, field in CAP_OPTIONS.items():
        assert DECLARED[option]["default"] == str(getattr(limits, field)), option
    assert DECLARED["deadline_margin_seconds"]["default"] == str(DEFAULT_MARGIN_SECONDS)
    assert DECLARED["metrics_public"]["default"] == "False"
    for unset in ("targets_dir", "worker_image", "worker_namespace", "deadline_notifier"):
        assert DECLARED[unset]["default"] is None, unset


def test_the_provider_info_is_valid_and_airflow_reads_its_defaults():
    from airflow.configuration import create_default_config_parser

    schema = json.loads((Path(__import__("airflow").__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)
    parser = create_default_config_parser(CONFIG)
    assert parser.getint("leviathan", "max_attempt_memory_mb") == AttemptLimits().memory_mb
    assert parser.getboolean("leviathan", "metrics_public") is False
    assert not parser.has_option("leviathan", "targets_dir")  # no default: the code's own fallback applies
