"""Idle-cycle budget of the GitHub forge: what one cycle costs when nothing changed.

Runs real cycles (``dag.test()``, the real GithubHook, git over HTTP) against the spec-validating fake
GitHub from the tests, in a throw-away AIRFLOW_HOME. The first cycle opens a pull request, the second
sees it (the open-PR list changed), then ``IDLE_CYCLES`` idle cycles are measured: REST requests by
status, rate-limit budget spent, git exchanges and bytes. Target: only 304s, zero budget, and one
ref-advertisement-sized git exchange (no pack). The idle cycles read the open PR's reviews, comments and CI
(commit status and check runs). The whole run is made twice in one invocation, with the demo's required
check and without it (the baseline), so "checks add no forge call to an idle cycle" is a ratio of the same
run. Prints a table and writes ``bench/results/idle_cycle.json``.

Run: ``.venv/bin/python bench/idle_cycle.py``
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDLE_CYCLES = 3
TOKEN = "ghp_BenchToken000000000000000000000000"


def _measure(*, checks: bool) -> dict:
    """Two cycles that deliver and settle, then ``IDLE_CYCLES`` idle ones, with or without required checks."""
    from bench.common import isolate_in_process

    home = isolate_in_process()
    from leviathan_lib.demo import create_demo_target
    from tests.airflow_helpers import evidence_record, run_cycle, set_switch
    from tests.fake_github import FakeGithub, connection_env

    set_switch(True)  # a new installation is off (fail closed); an admin switches it on
    with FakeGithub(TOKEN) as fake:
        # Own target ids: the second run shares the in-process Airflow (and its metadata DB) with the first.
        target_id = "bench" if checks else "bench-baseline"
        target_file = create_demo_target(home, target_id=target_id, targets_dir=home / "targets")
        bare = home / "repos" / f"{target_id}.git"
        fake.add_repo("acme/widgets", bare)
        text = target_file.read_text().replace(f"target_repo_url: {bare}",
                                               f"target_repo_url: {fake.repo_url('acme/widgets')}")
        text = text.replace("forge: local", "forge: github\nforge_conn_id: github_bench")
        if not checks:
            text = re.sub(r"(?m)^required_checks:.*\n", "", text)
            assert "required_checks" not in text, "the demo target's required_checks moved: update the bench"
        target_file.write_text(text)
        os.environ["AIRFLOW_CONN_GITHUB_BENCH"] = connection_env(fake)

        rows = []
        for n in range(2 + IDLE_CYCLES):
            api_before, git_before, budget = len(fake.requests), len(fake.git_requests), fake.rate_remaining
            dag_run, _ = run_cycle(target_file)
            record = evidence_record(dag_run)
            api = fake.requests[api_before:]
            git = fake.git_requests[git_before:]
            rows.append({
                "cycle": n + 1, "kind": "idle" if n >= 2 else ("delivers" if n == 0 else "settles"),
                "stopped_reason": record["stopped_reason"],
                "api_requests": len(api),
                "api_by_status": dict(Counter(str(status) for _, _, status, _ in api)),
                "rate_limit_spent": budget - fake.rate_remaining,
                "git_requests": len(git), "git_bytes_sent": sum(s for _, s, _ in git),
                "git_bytes_received": sum(r for _, _, r in git),
            })
        if fake.errors:
            raise SystemExit("requests or responses outside the GitHub description:\n" + "\n".join(fake.errors))
    idle = [r for r in rows if r["kind"] == "idle"]
    return {
        "required_checks": checks,
        "idle_cycles": len(idle),
        "idle_only_304": all(set(r["api_by_status"]) == {"304"} for r in idle),
        "idle_rate_limit_spent": sum(r["rate_limit_spent"] for r in idle),
        "idle_git_bytes_per_cycle": max(r["git_bytes_sent"] + r["git_bytes_received"] for r in idle),
        "idle_api_requests_per_cycle": max(r["api_requests"] for r in idle),
        "cycles": rows,
    }


def main() -> dict:
    sys.path.insert(0, str(ROOT))
    runs = [_measure(checks=True), _measure(checks=False)]
    with_checks, baseline = runs
    result = {**with_checks, "baseline_without_checks": baseline,
              "idle_requests_ratio_checks_vs_none": with_checks["idle_api_requests_per_cycle"]
              / max(baseline["idle_api_requests_per_cycle"], 1)}
    rows = [*with_checks["cycles"], *[{**r, "kind": f"{r['kind']} (no checks)"} for r in baseline["cycles"]]]
    header = f"{'cycle':>5} {'kind':<20} {'stopped':<14} {'api':>4} {'by status':<20} {'budget':>6} " \
             f"{'git req':>7} {'git bytes':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        statuses = " ".join(f"{k}x{v}" for k, v in sorted(r["api_by_status"].items()))
        print(f"{r['cycle']:>5} {r['kind']:<20} {r['stopped_reason']:<14} {r['api_requests']:>4} {statuses:<20} "
              f"{r['rate_limit_spent']:>6} {r['git_requests']:>7} {r['git_bytes_sent'] + r['git_bytes_received']:>9}")
    for run in runs:
        print(f"idle (required checks: {run['required_checks']}): only 304s = {run['idle_only_304']}, rate-limit "
              f"budget spent = {run['idle_rate_limit_spent']}, API requests per cycle <= "
              f"{run['idle_api_requests_per_cycle']}, git bytes per cycle <= {run['idle_git_bytes_per_cycle']}")
    print(f"idle requests with checks / without: {result['idle_requests_ratio_checks_vs_none']:.2f}")
    out = ROOT / "bench" / "results" / "idle_cycle.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")
    return result


if __name__ == "__main__":
    main()
