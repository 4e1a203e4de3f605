"""The DAG folder imports cleanly, every DAG is documented and tagged, and a broken target is isolated."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from leviathan_lib.core import names
from leviathan_lib.core.names import evidence_asset_uri
from leviathan_lib.core.schedule import offset
from leviathan_lib.demo import create_demo_target

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dagbag(tmp_path, targets_dir):
    from airflow.dag_processing.dagbag import DagBag

    create_demo_target(tmp_path, target_id="good", targets_dir=targets_dir)
    create_demo_target(tmp_path, target_id="fine", targets_dir=targets_dir)
    (targets_dir / "strbool.yaml").write_text(
        "target_id: strbool\ntarget_repo_url: /nowhere.git\nautonomy_enabled: \"false\"\nmax_pr_per_hour: 3\n",
        encoding="utf-8",
    )
    (targets_dir / "syntax.yaml").write_text("target_id: [unclosed\n", encoding="utf-8")
    (targets_dir / "hostile.yaml").write_text(
        f"target_id: hostile\ntarget_repo_url: '--upload-pack=touch {tmp_path / 'pwned'}'\n", encoding="utf-8"
    )
    (targets_dir / "dup.yaml").write_text("target_id: good\ntarget_repo_url: /other.git\n", encoding="utf-8")
    (targets_dir / "notes.txt").write_text("not a target file", encoding="utf-8")
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_every_dag_has_tags_doc_and_retries(dagbag):
    assert dagbag.dags
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags and "leviathan" in dag.tags, dag_id
        assert dag.doc_md and dag.description, dag_id
        assert "retries" in dag.default_args, dag_id
        for task in dag.tasks:
            assert task.retries is not None, f"{dag_id}.{task.task_id}"


def test_valid_target_dag_shape(dagbag):
    dag = dagbag.dags[names.dag_id("fine")]
    assert dag.max_active_runs == 1 and dag.catchup is False
    # The default */5 gets the target's stable slot in the 5-minute interval (core/schedule.py).
    assert dag.schedule == f"{offset('fine', 'minute', 5)}-59/5 * * * *"
    plan = dag.task_dict[names.TASK_PLAN]
    assert plan.upstream_task_ids == set()
    # Every task hangs from plan too, so a skip skips them all but `skip` in one call (no cascade for the
    # scheduler); `skip` is a leaf on plan alone: a plan that ends failed after skipping fails the run.
    assert plan.downstream_task_ids == set(dag.task_dict) - {names.TASK_PLAN}
    assert plan.max_active_tis_per_dag == 1  # one plan per target at a time, backfill replays included
    assert plan.do_xcom_push is False  # nothing reads the branch list; an idle cycle writes one XCom fewer
    skip = dag.task_dict[names.TASK_SKIP]
    assert type(skip).__name__ == "EmptyOperator" and skip.upstream_task_ids == {names.TASK_PLAN}
    assert skip.downstream_task_ids == set() and skip.trigger_rule == "all_success"
    assert dag.task_dict[names.TASK_RUN_WORKER].downstream_task_ids == {names.TASK_OPEN_PULL_REQUEST}
    record = dag.task_dict[names.TASK_RECORD_EVIDENCE]
    assert record.upstream_task_ids == {names.TASK_PLAN, names.TASK_OPEN_PULL_REQUEST}
    assert record.trigger_rule == "none_skipped"  # after an attempt or a failed plan; never after a skip
    outcome = dag.task_dict[names.TASK_CYCLE_OUTCOME]
    assert outcome.upstream_task_ids == {names.TASK_PLAN, names.TASK_RECORD_EVIDENCE}
    assert outcome.trigger_rule == "none_failed_min_one_success"
    # plan emits through an alias (an event only for a skip); record_evidence through the asset itself.
    assert [type(o).__name__ for o in plan.outlets] == ["AssetAlias"]
    assert [o.uri for o in record.outlets] == [evidence_asset_uri("fine")]
    # plan reads its evidence and the global switch's recorded changes (core/autonomy.py)
    assert [o.uri for o in plan.inlets] == [evidence_asset_uri("fine"), names.AUTONOMY_ASSET_URI]
    assert dag.task_dict[names.TASK_RUN_WORKER].retries == 0  # a retry would be a second, unrecorded attempt


def test_broken_target_files_become_visible_error_dags(dagbag, tmp_path):
    """A broken file keeps its target's DAG (by the id it names, else its file name) in an error shape."""
    errors = {d: dag for d, dag in dagbag.dags.items() if "config-error" in dag.tags}
    assert set(errors) == {names.dag_id("strbool"), names.dag_id("syntax"), names.dag_id("good"),
                           names.dag_id("hostile")}
    text = {dag_id: _text(dag.doc_md) for dag_id, dag in errors.items()}
    assert "hostile.yaml:2: target_repo_url: not a repository URL git may be given: must not start with '-'" in \
        text[names.dag_id("hostile")]
    assert not (tmp_path / "pwned").exists()
    assert "autonomy_enabled: Input should be a valid boolean" in text[names.dag_id("strbool")]
    # The parser's hints reach the error DAG as they reach `leviathan validate`.
    assert "strbool.yaml:4: max_pr_per_hour: unknown key; did you mean 'max_prs_per_hour'?" in \
        text[names.dag_id("strbool")]
    assert "syntax.yaml:2: invalid YAML" in text[names.dag_id("syntax")]
    # Two files name target_id "good": neither runs, both say why, on good's own DAG.
    good = text[names.dag_id("good")]
    assert "dup.yaml" in good and "is also named by" in good and "good.yaml" in good
    assert names.dag_id("fine") in dagbag.dags and "config-error" not in dagbag.dags[names.dag_id("fine")].tags
    for dag in errors.values():
        assert dag.schedule is not None and dag.max_active_runs == 1 and dag.catchup is False
        assert list(dag.task_dict) == [names.TASK_CONFIG_ERROR, names.TASK_CYCLE_OUTCOME]
        config = dag.task_dict[names.TASK_CONFIG_ERROR]
        assert [o.uri for o in config.outlets] == [o.uri for o in config.inlets]


def _text(markdown: str) -> str:
    """What a person reads on the DAG's page (the escapes rendered away)."""
    from html import unescape

    from markdown_it import MarkdownIt

    return unescape(re.sub(r"<[^>]+>", "", MarkdownIt("commonmark").render(markdown)))


def test_dag_file_parse_imports_nothing_heavy(tmp_path, targets_dir):
    """Parsing must not import the worker, forge, Kubernetes or GitHub clients (cheap, no network)."""
    create_demo_target(tmp_path, target_id="light", targets_dir=targets_dir)
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('kubernetes', 'github', 'leviathan_lib.worker', 'leviathan_lib.forge',"
        " 'leviathan_lib.cycle.delivery', 'leviathan_lib.core.guardrails') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "dags" / "leviathan_targets.py")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_deployment_defaults_fill_only_keys_a_target_file_leaves_out(tmp_path, targets_dir, monkeypatch):
    from leviathan_lib.orchestrator.dag_factory import build_all

    create_demo_target(tmp_path, target_id="plain", targets_dir=targets_dir)
    explicit = create_demo_target(tmp_path, target_id="explicit", targets_dir=targets_dir)
    explicit.write_text(explicit.read_text() + "worker_image: ghcr.io/acme/worker:2\n")
    monkeypatch.setenv("AIRFLOW__LEVIATHAN__WORKER_IMAGE", "123.dkr.ecr.example/leviathan-worker:0.1.0")
    dags = build_all(targets_dir)

    def effective(dag_id: str) -> dict:
        return dags[dag_id].task_dict[names.TASK_PLAN].op_kwargs["config"]

    assert effective(names.dag_id("plain"))["worker_image"] == "123.dkr.ecr.example/leviathan-worker:0.1.0"
    assert effective(names.dag_id("explicit"))["worker_image"] == "ghcr.io/acme/worker:2"
    assert effective(names.dag_id("plain"))["worker_namespace"] == "leviathan"


def test_target_values_are_escaped_in_the_dag_doc(tmp_path):
    """A target file is user input: its values cannot inject Markdown or HTML into the DAG's page."""
    from markdown_it import MarkdownIt

    from leviathan_lib.core.config import parse_target
    from leviathan_lib.orchestrator.dag_factory import build_target_dag

    hostile = "/srv/a`<img/src=x/onerror=alert(1)>`|[x](javascript:alert(1))&amp;**b**.git"
    target = parse_target(
        f"target_id: hostile\ntarget_repo_url: {json.dumps(hostile)}\n"
        'backlog_path: "<script>alert(1)</script>.yaml"\nallowed_path_prefixes: ["docs/", "| cell |"]\n',
        "t.yaml",
    )
    doc = build_target_dag(target, tmp_path / "<b>t</b>.yaml").doc_md
    html = MarkdownIt("commonmark").enable("table").render(doc)
    assert "<img" not in html and "<script" not in html and "<a " not in html and "<b>" not in html
    assert html.count("<code>") == 3  # only the template's own: `ready: true`, `plan`, `record_evidence`
    assert "<strong>b</strong>" not in html and html.count("<td>") == 10  # no cell split by a value
    # The values still read as written.
    assert "/srv/a`&lt;img/src=x/onerror=alert(1)&gt;`|[x](javascript:alert(1))&amp;amp;**b**.git" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.yaml" in html and "docs/, | cell |" in html


def test_target_values_are_never_jinja_templates(tmp_path):
    """A target file's strings reach the tasks as written: the task runner renders a task's template fields
    before it runs, and a label like ``{{ conn... }}`` must not pull a connection's secret into a pull
    request. Leviathan's tasks have none, so nothing is rendered (or stored as rendered fields)."""
    from leviathan_lib.core.config import parse_target
    from leviathan_lib.orchestrator.dag_factory import build_target_dag

    template = "{{ conn.github_default.password }}{{ 6 * 7 }}"
    text = f"target_id: jinja\ntarget_repo_url: /srv/{{{{x}}}}.git\npr_labels: [{json.dumps(template)}]\n"
    target = parse_target(text, "t.yaml")
    dag = build_target_dag(target, tmp_path / "t.yaml")
    with_config = [t for t in dag.task_dict.values() if "config" in getattr(t, "op_kwargs", {})]
    assert {t.task_id for t in with_config} >= {names.TASK_PLAN, names.TASK_RUN_WORKER, names.TASK_RECORD_EVIDENCE}
    for task in with_config:
        assert task.template_fields == (), task.task_id
        task.render_template_fields({"conn": None, "x": "y"})  # what the task runner does before execute
        assert task.op_kwargs["config"]["pr_labels"] == [template], task.task_id
    assert dag.task_dict[names.TASK_PLAN].op_kwargs["repo_url"] == "/srv/{{x}}.git"
    assert [t.task_id for t in dag.tasks if t.template_fields] == []


def test_a_thousand_target_files_some_broken_parse_within_the_import_timeout(targets_dir, monkeypatch):
    """1,000 target files, 20 of them broken four ways: one error DAG per broken file, every good one a DAG.

    The parse's CPU time (not wall time: this machine is shared) must stay under the configured
    ``[core] dagbag_import_timeout``; the DagBag's own wall-clock alarm is lifted so load cannot flake it.
    """
    import time

    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag

    timeout = conf.getint("core", "dagbag_import_timeout")
    monkeypatch.setenv("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "900")

    broken = {
        "yaml": b"target_id: [unclosed\n",
        "type": b"target_id: t\ntarget_repo_url: /r.git\nmax_open_prs: many\n",
        "id": b"target_id: Not An Id\ntarget_repo_url: /r.git\n",
        "utf8": b"target_id: t\ntarget_repo_url: /r\xff.git\n",
    }
    expected_errors = set()
    for i in range(1000):
        if i % 50 == 7:
            kind = list(broken)[i // 50 % 4]
            (targets_dir / f"bad{i:04d}.yaml").write_bytes(broken[kind])
            # A file naming no readable id keeps its file name's; the others all name "t" (one DAG for them).
            expected_errors.add(names.dag_id(f"bad{i:04d}" if kind in ("yaml", "id") else "t"))
        else:
            (targets_dir / f"t{i:04d}.yaml").write_text(
                f"target_id: t{i:04d}\ntarget_repo_url: /srv/t{i:04d}.git\n", encoding="utf-8")
    assert len(expected_errors) == 11

    cpu = time.process_time()
    dagbag = DagBag(dag_folder=str(ROOT / "dags"))
    cpu = time.process_time() - cpu
    assert dagbag.import_errors == {}
    assert cpu < timeout, f"1,000 target files took {cpu:.1f} CPU-s to parse; the import timeout is {timeout} s"
    errors = {d for d, dag in dagbag.dags.items() if "config-error" in dag.tags}
    assert errors == expected_errors
    assert len(dagbag.dags) - len(errors) == 980
    for dag_id in errors:
        assert [t.task_id for t in dagbag.dags[dag_id].tasks] == [names.TASK_CONFIG_ERROR, names.TASK_CYCLE_OUTCOME]
        assert dagbag.dags[dag_id].doc_md.count("bad") >= 1  # names its file
    # Each problem is shown once: the ten files naming "t" are listed on its one DAG, once each.
    shown = _text(dagbag.dags[names.dag_id("t")].doc_md)
    assert sorted(re.findall(r"bad\d{4}\.yaml:3: max_open_prs", shown)) == sorted(set(re.findall(
        r"bad\d{4}\.yaml:3: max_open_prs", shown))) and len(re.findall(r"bad\d{4}\.yaml:3: max_open_prs", shown)) == 5


def _gate_dag(tmp_path, approval: str):
    from leviathan_lib.core.config import parse_target
    from leviathan_lib.orchestrator.dag_factory import build_target_dag

    text = f"target_id: gated\ntarget_repo_url: /r.git\napproval: {approval}\napproval_timeout_seconds: 3600\n"
    return build_target_dag(parse_target(text, "gated.yaml"), tmp_path / "gated.yaml")


def test_approval_none_keeps_the_graph_and_a_gate_sits_where_it_is_asked_for(tmp_path):
    plain = _gate_dag(tmp_path, "none")
    assert not {names.TASK_APPROVE_PLAN, names.TASK_APPROVE_PULL_REQUEST} & set(plain.task_dict)
    assert plain.task_dict[names.TASK_PLAN].downstream_task_ids == {
        names.TASK_RUN_WORKER, names.TASK_SKIP, names.TASK_OPEN_PULL_REQUEST, names.TASK_RECORD_EVIDENCE,
        names.TASK_CYCLE_OUTCOME}
    plan = _gate_dag(tmp_path, "plan")
    gate = plan.task_dict[names.TASK_APPROVE_PLAN]
    assert type(gate).__name__ == "ApprovalGate" and gate.retries == 0
    assert plan.task_dict[names.TASK_PLAN].downstream_task_ids == set(plan.task_dict) - {names.TASK_PLAN}
    assert plan.task_dict[names.TASK_RUN_WORKER].upstream_task_ids == {names.TASK_PLAN, names.TASK_APPROVE_PLAN}
    assert gate.downstream_task_ids == {names.TASK_RUN_WORKER, names.TASK_CYCLE_OUTCOME}
    assert gate.defaults == ["Reject"] and gate.response_timeout.total_seconds() == 3600
    assert [type(o).__name__ for o in gate.outlets] == ["AssetAlias"]  # an event only for a rejection
    assert plain.dagrun_timeout.total_seconds() + 3600 == plan.dagrun_timeout.total_seconds()
    pr = _gate_dag(tmp_path, "pull_request")
    assert pr.task_dict[names.TASK_RUN_WORKER].downstream_task_ids == {names.TASK_APPROVE_PULL_REQUEST}
    assert pr.task_dict[names.TASK_APPROVE_PULL_REQUEST].downstream_task_ids == {
        names.TASK_OPEN_PULL_REQUEST, names.TASK_CYCLE_OUTCOME}


def test_a_deadline_alert_only_when_a_notifier_is_configured(tmp_path, monkeypatch):
    assert not _gate_dag(tmp_path, "none").deadline
    monkeypatch.setenv("AIRFLOW__LEVIATHAN__DEADLINE_NOTIFIER", "leviathan_lib.orchestrator.deadline.DeadlineNotifier")
    monkeypatch.setenv("AIRFLOW__LEVIATHAN__DEADLINE_MARGIN_SECONDS", "60")
    [alert] = _gate_dag(tmp_path, "plan").deadline
    assert alert.interval.total_seconds() == 900 + 3600 + 60  # attempt + approval timeout + margin
    assert alert.callback.path == "leviathan_lib.orchestrator.deadline.deadline_missed"
    assert alert.callback.kwargs == {"target_id": "gated", "expected_seconds": 4560}


def test_target_files_in_mid_edit_are_each_shown_once_and_hurt_no_healthy_target(tmp_path, targets_dir):
    """Truncated, tagged, alias-bombed, symlinked, FIFO and oversized files: each is one problem on its own DAG."""
    import os

    from leviathan_lib.core.target_scan import MAX_TARGET_FILE_BYTES
    from leviathan_lib.orchestrator.dag_factory import build_all

    create_demo_target(tmp_path, target_id="healthy", targets_dir=targets_dir)
    full = (targets_dir / "healthy.yaml").read_text()
    (targets_dir / "truncated.yaml").write_text(full.replace("healthy", "truncated")[:60])  # cut mid-write
    (targets_dir / "tagged.yaml").write_text("target_id: tagged\ntarget_repo_url: !!python/object:os.system x\n")
    bomb = "target_id: bomb\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" \
           "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    (targets_dir / "bomb.yaml").write_text(bomb)
    outside = tmp_path / "secret.yaml"
    outside.write_text("target_id: outside\ntarget_repo_url: /srv/x.git\n")
    (targets_dir / "linked.yaml").symlink_to(outside)
    os.mkfifo(targets_dir / "fifo.yaml")  # would block a plain read forever
    (targets_dir / "huge.yaml").write_text("target_id: huge\n#" + "x" * MAX_TARGET_FILE_BYTES)
    (targets_dir / "dangling.yaml").symlink_to(tmp_path / "gone.yaml")

    dags = build_all(targets_dir)
    assert "config-error" not in dags[names.dag_id("healthy")].tags  # every healthy target keeps its cycle
    problems = {dag_id: dag.task_dict[names.TASK_CONFIG_ERROR].op_kwargs["problems"] for dag_id, dag in dags.items()
                if "config-error" in dag.tags}
    expected = {
        "truncated": "truncated.yaml", "tagged": "tagged.yaml", "bomb": "bomb.yaml",
        "linked": "outside the targets folder", "fifo": "not a regular file",
        "huge": "byte limit of a target file", "dangling": "cannot read file",
    }
    assert {names.dag_target_id(d) for d in problems} == set(expected)
    for tid, words in expected.items():
        shown = problems[names.dag_id(tid)]
        assert len(shown) == 1 and words in shown[0], (tid, shown)  # one problem each, said once
    assert "outside" not in str(problems[names.dag_id("linked")]).replace("outside the targets folder", "")


def test_a_webhooks_target_runs_on_its_change_asset_or_its_spread_safety_net(tmp_path):
    from airflow.sdk import AssetOrTimeSchedule

    from leviathan_lib.core.config import parse_target
    from leviathan_lib.orchestrator.dag_factory import build_target_dag

    text = "target_id: hooked\ntarget_repo_url: https://github.com/acme/widgets.git\nforge: github\n"
    dag = build_target_dag(parse_target(text + "webhooks: true\n", "hooked.yaml"), tmp_path / "hooked.yaml")
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.asset_condition.uri == names.change_asset_uri("hooked")
    assert dag.timetable.timetable.expression == f"{offset('hooked', 'minute', 60)} * * * *"  # "H * * * *", spread
    polled = build_target_dag(parse_target(text, "hooked.yaml"), tmp_path / "hooked.yaml")
    assert polled.schedule == f"{offset('hooked', 'minute', 5)}-59/5 * * * *"  # unchanged without webhooks
