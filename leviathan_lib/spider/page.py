"""The operator page behind the Airflow UI's "Leviathan" link: one table, server-rendered, no scripts.

Every value is HTML-escaped: reasons and details come from records, which come from backlogs. The page is
served under a Content-Security-Policy (:data:`CSP`) that allows no script at all and only its own inline
style, by hash, so even a missed escape could not run code.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from urllib.parse import quote

from leviathan_lib.control.fleet import Overview

STYLE = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}\n"
         "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}")
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
#: No scripts, no plugins, no foreign frames or forms; the page may be framed by the Airflow UI (same origin).
CSP = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'self'; frame-ancestors 'self'; "
       "base-uri 'none'; form-action 'self'")


def _yes(flag: bool | None, yes: str = "on", no: str = "off", unknown: str = "unknown") -> str:
    return unknown if flag is None else (yes if flag else no)


def _sandbox(label: str) -> str:
    """Where recipes run; an opt-out is shouted, it exposes the worker's secrets."""
    if label.startswith("unsandboxed"):
        return "<strong class='unsandboxed'>UNSANDBOXED (opt-out)</strong>"
    return escape(label)


def render_page(overview: Overview) -> str:
    rows = []
    for t in overview.targets:
        prs = ", ".join(f"#{escape(str(p['number']))} ({escape(str(p['branch']))})" for p in t.open_prs) or "none"
        last = (f"{escape(t.last_decision or '')} / {escape(t.last_stopped_reason or '')}"
                f"<br><small>{escape(t.last_cycle_at.isoformat()) if t.last_cycle_at else ''}</small>"
                if t.last_decision else "no cycle yet")
        counts = escape(f"{t.consecutive_failures}/{t.breaker_threshold}")
        breaker = f"{_yes(t.breaker_open, 'OPEN', 'closed')} ({counts})"
        rows.append(
            f"<tr><td><a href='/dags/{escape(quote(t.dag_id, safe=''))}' target='_top'>{escape(t.target_id)}</a></td>"
            f"<td>{_yes(t.effective_enabled, 'yes', 'no')}</td><td>{_yes(t.target_flag)}</td>"
            f"<td>{_yes(t.dag_paused, 'paused', 'running', 'not parsed')}</td><td>{breaker}</td>"
            f"<td>{last}</td><td>{escape(', '.join(t.last_reasons)) or '-'}</td><td>{prs}</td>"
            f"<td>{_sandbox(t.sandbox)}</td></tr>"
        )
    body = "\n".join(rows) or "<tr><td colspan='9'>no valid target files</td></tr>"
    switch = "ON" if overview.global_enabled else "OFF"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Leviathan</title>
<style>{STYLE}</style></head>
<body><h1>Leviathan</h1>
<p>Global autonomy switch: <strong id="global-switch">{switch}</strong> ({escape(overview.global_detail)}).
Pause a target's DAG to switch that target off; see docs/operations.md for the emergency stop.</p>
<table><thead><tr><th>target</th><th>may run now</th><th>target flag</th><th>DAG</th><th>breaker</th>
<th>last decision / stopped</th><th>reasons</th><th>open PRs</th><th>sandbox</th></tr></thead>
<tbody>
{body}
</tbody></table>
<p>Machine-readable: <a href="metrics">metrics</a>, <a href="events">events</a>,
<a href="autonomy">autonomy</a>, <a href="health">health</a>.</p></body></html>
"""
