"""The Leviathan view: server-rendered pages under ``/leviathan/ui``, in the Airflow nav (``external_views``).

Pages: the fleet (``/ui``), one target (``/ui/targets/<id>``: backlog verdicts, charts, PRs, attempts,
evidence) and a local-forge PR (``/ui/targets/<id>/prs/<n>``: description, reviews and comments, coloured
diff, what a reviewer can do in its state). Admin actions are HTML form POSTs (global
switch, pause/resume a target, reset its breaker): admin role, same origin, a CSRF token bound to the login
and a reason, each recorded as evidence (who, why) and so as an event. Viewers get no forms, and the POSTs
refuse them.

Templates are Jinja2 with autoescape: every value from a backlog, a target file or a record is escaped;
Markdown from a PR (its body, reviews, comments) is rendered and sanitized by :mod:`leviathan_lib.spider.markdown`.
The CSP allows only this module's own style and script, by hash; the script only makes links leave the
Airflow shell's sandboxed iframe (which allows no popups or top-level navigation) and follow its theme.
Every failure to read something renders as "unknown: <reason>" in the page, never a blank page or a 500.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Form, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from leviathan_lib.control import breaker, fleet, scorecard, switch, target_view, webhooks
from leviathan_lib.core import names, target_scan, until
from leviathan_lib.core.errors import CodedError
from leviathan_lib.core.reasons import EXPLAIN, explain
from leviathan_lib.core.secrets_scan import redact_text
from leviathan_lib.evidence.records import History
from leviathan_lib.evidence.scorecard import LABELS, counts_later
from leviathan_lib.spider import URL_PREFIX
from leviathan_lib.spider.auth import AdminUser, BearerCredentials, GetUserDep, csrf_token, is_admin, require_csrf
from leviathan_lib.spider.auth import username as user_name
from leviathan_lib.spider.charts import horizontal_bars, stacked_bars
from leviathan_lib.spider.diff import diff_lines
from leviathan_lib.spider.markdown import to_html

log = logging.getLogger(__name__)

ROOT = f"{URL_PREFIX}/ui"
#: A target id as target files allow it (a path parameter outside this shape is a 422 page).
TargetId = Annotated[str, PathParam(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
_TEMPLATES = files("leviathan_lib.spider") / "templates"
STYLE = (_TEMPLATES / "view.css").read_text(encoding="utf-8")
SCRIPT = (_TEMPLATES / "view.js").read_text(encoding="utf-8")
ICON = (_TEMPLATES / "icon.svg").read_text(encoding="utf-8")


def _hash(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


#: Only this module's style and script run; forms post only here; only the Airflow UI (same origin) frames it.
CSP = (f"default-src 'none'; style-src 'sha256-{_hash(STYLE)}'; script-src 'sha256-{_hash(SCRIPT)}'; "
       "img-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'")
#: ``same-origin``, not the API's ``no-referrer``: under no-referrer Chromium sends ``Origin: null`` with a form
#: POST, which the same-origin check must refuse. Links to other sites still carry no referrer.
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "SAMEORIGIN", "Referrer-Policy": "same-origin"}

REASON_TEXT_BY_CODE = {str(code): text for code, text in EXPLAIN.items()}

#: The only messages a redirect can show (``?done=`` is a key here, never text from the request).
NOTICES = {
    "autonomy-off": "Global autonomy switched OFF: no new attempt starts; a running one finishes. Recorded.",
    "autonomy-on": "Global autonomy switched ON. Recorded.",
    "paused": "Target paused: its DAG schedules no new cycle. Recorded.",
    "resumed": "Target resumed: its DAG is unpaused. Recorded.",
    "breaker-reset": "Breaker reset: the next cycle may attempt again. Recorded.",
    "fleet-breaker-reset": "Fleet breaker reset: every target's next cycle may attempt again. Recorded.",
}

_env = Environment(loader=FileSystemLoader(str(_TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)
_env.filters["q"] = lambda value: quote(str(value), safe="")
_env.filters["markdown"] = to_html  # untrusted Markdown, rendered and sanitized (spider.markdown)


class Viewer:
    """Who is looking: their name, whether they get the admin forms, and the form token for their login."""

    def __init__(self, name: str, admin: bool, csrf: str):
        self.name, self.admin, self.csrf = name, admin, csrf

    @classmethod
    def of(cls, request: Request, user: Any, credentials: Any) -> Viewer:
        if user is None:
            return cls("nobody", False, "")
        return cls(user_name(user), is_admin(user), csrf_token(request, credentials))


def render(name: str, viewer: Viewer, **context: Any) -> str:
    """A template with the header's context; pure (the caller read everything it shows)."""
    base = {"root": ROOT, "api": URL_PREFIX, "style": Markup(STYLE), "script": Markup(SCRIPT),
            "user_name": viewer.name, "admin": viewer.admin, "csrf": viewer.csrf, "notice": None, "error": None,
            "now": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "global_enabled": None, "nav_targets": []}
    base.update(context)
    return _env.get_template(name).render(**base)


def _header() -> dict[str, Any]:
    """The header's switch and target links, for pages that read nothing else of the fleet (best effort)."""
    try:
        return {"global_enabled": fleet.global_switch()[0],
                "nav_targets": sorted(target_scan.by_target(fleet.target_files()[0]))}
    except Exception as exc:  # noqa: BLE001 — the header is best effort; the page body says what it reads
        log.warning("view header: %s", exc)
        return {}


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=HEADERS)


def why_not(state: fleet.TargetState, global_enabled: bool, *, decided: bool = False) -> list[str]:
    """Every reason a cycle starting now would not run a worker, in words. ``decided``: the page also shows
    the guardrails' decision, whose failed checks (:func:`decision_why_not`) say the switches, the breaker,
    the budget and the hourly limit in the guardrails' own words: they are left out here."""
    out = []
    if not state.config_valid:
        out.append("config_invalid: its target file cannot be used (see the target's page); no cycle runs")
    if state.stale:
        out.append(f"stale: {state.stale_reason}")
    if not global_enabled and not decided:
        out.append("global autonomy switch is off")
    if state.config_valid and not state.target_flag and not decided:
        out.append("autonomy_enabled: false in the target file")
    if state.dag_paused is None:
        out.append("its DAG is not parsed yet")
    elif state.dag_paused:
        out.append("its DAG is paused")
    if state.unreadable_records:
        out.append(f"{state.unreadable_records} unreadable evidence record(s): the breaker is treated as open")
    if decided:
        return out
    if state.breaker_open:
        out.append(f"circuit breaker open ({state.consecutive_failures}/{state.breaker_threshold} failures): "
                   f"{until.BREAKER_UNTIL}")
    if state.llm_budget_exhausted:
        out.append(f"daily model budget spent: {state.llm_budget_detail}")
    if state.next_pr_at is not None:
        out.append(f"pr_hourly_limit: {until.next_pr_after(state.next_pr_at, datetime.now(UTC))}")
    return out


def decision_why_not(backlog: target_view.BacklogView) -> list[str]:
    """Why the guardrails' decision is a skip: each failed check with its detail (until when, for a limit)."""
    if backlog.unknown or backlog.decision != "skip":
        return []
    failed = [f"{c['name']}: {c['detail']}" for c in backlog.checks if not c["passed"]]
    return failed or [f"{reason}: {explain(reason)}" for reason in backlog.reasons]


def _open_prs(target: Any | None, state: fleet.TargetState, history: Any) -> list[dict[str, Any]]:
    urls = {c.attempt.pr_number: c.attempt.pr_url for c in history.cycles if c.attempt and c.attempt.pr_number}
    return [{"number": p["number"], "task_id": p.get("task_id", ""), "ci": p.get("ci_state"),
             "url": target_view.pr_link(target, p["number"], urls.get(p["number"]))} for p in state.open_prs]


def _last_run_id(history: Any) -> str | None:
    """The DAG run of the newest cycle that acted (a replay is never the last cycle)."""
    return next((c.dag_run_id for c in reversed(history.cycles) if not c.replay), None)


def fleet_scorecard(overview: fleet.Overview) -> dict[str, Any]:
    """The fleet page's scorecard section: each target's and the fleet's, from the totals the overview read."""
    result = scorecard.from_totals({t.target_id: t.totals for t in overview.targets})
    cards = [*result.targets, result.fleet] if result.targets else []
    return {"rows": [{"card": card, "cells": card.cells(), "later": counts_later(card)} for card in cards],
            "unknown": result.unknown, "labels": LABELS}


def render_fleet(viewer: Viewer, overview: fleet.Overview, histories: dict[str, Any], targets: dict[str, Any], *,
                 next_runs: dict[str, datetime | None], notice: str | None = None,
                 health: tuple[str, list[str]] = ("unknown", []), outside: list[Any] | None = None) -> str:
    """The fleet page: one row per target, broken ones too (may it run now and why not, breaker, budget, PRs,
    cycles), and the broken files that name no target."""
    rows = []
    for state in overview.targets:
        history = histories[state.target_id]
        reasons = why_not(state, overview.global_enabled)
        if overview.fleet.breaker_open:
            reasons.append("fleet breaker open (see Fleet limits)")
        rows.append({"state": state, "may_run": state.effective_enabled and not reasons, "why_not": reasons,
                     "open_prs": _open_prs(targets.get(state.target_id), state, history),
                     "last_run_id": _last_run_id(history),
                     "next_run": next_runs.get(state.dag_id), "unsandboxed": state.sandbox.startswith("unsandboxed")})
    return render("fleet.html", viewer, overview=overview, rows=rows, folder_problem=overview.folder_problem,
                  broken=overview.unnamed_files, notice=notice, health=health, outside=outside or [],
                  scorecard=fleet_scorecard(overview),
                  global_enabled=overview.global_enabled, nav_targets=[t.target_id for t in overview.targets])


def _health(overview: fleet.Overview) -> tuple[str, list[str]]:
    """``/leviathan/health``'s status and its problems in words (the same function answers both)."""
    from leviathan_lib.control import health

    try:
        status, components = health.health(overview=overview)
    except Exception as exc:  # noqa: BLE001 — shown as unknown
        return "unknown", [f"{type(exc).__name__}: {exc}"]
    return status, health.problems(components)


def _outside() -> list[Any]:
    """The newest switch changes made outside Leviathan (best effort: the page says what it could not read)."""
    try:
        return switch.outside_changes()
    except Exception as exc:  # noqa: BLE001 — shown as unknown, never a 500
        log.warning("outside switch changes: %s", exc)
        return []


def _notice(done: str | None) -> str | None:
    return NOTICES.get(done or "")


def _period(days: str) -> tuple[int, str | None]:
    value = int(days) if days.isdigit() else 0
    if value in target_view.PERIODS:
        return value, None
    return target_view.PERIODS[0], f"period {days[:20]!r} is not one of {target_view.PERIODS} days: showing 7"


def _find_target(target_id: str) -> tuple[Any, Path | None, list[Any], str | None]:
    """The target's config and file; or the broken files naming it (the page shows it with its history);
    or why there is no such target."""
    entries, folder_problem = fleet.target_files()
    if folder_problem:
        return None, None, [], folder_problem
    files = target_scan.by_target(entries).get(target_id, [])
    if len(files) == 1 and files[0].target is not None:
        return files[0].target, Path(files[0].path), [], None
    if files:
        return None, None, files, None
    unnamed = [f for f in entries if f.target_id is None and Path(f.name).stem == target_id]
    if unnamed:
        return None, None, [], f"the target file {unnamed[0].name} cannot be used: {'; '.join(unnamed[0].problems)}"
    return None, None, [], f"no configured target {target_id!r}"


def _charts(activity: target_view.Activity, days: int) -> dict[str, Markup]:
    series = activity.series
    lead = [(f"#{p.number} {p.task_id}", p.lead_time_hours) for p in reversed(activity.prs)
            if p.lead_time_hours is not None]
    return {
        "cycles": stacked_bars(f"Cycles by decision, last {days} days", series.days, series.cycles),
        "attempts": stacked_bars(f"Attempts by outcome, last {days} days", series.days, series.attempts),
        "prs": stacked_bars(f"PRs opened, merged and closed, last {days} days", series.days, series.prs),
        "lead": horizontal_bars(f"Lead time from ready to merged per PR, last {days} days", lead, "h"),
    }


def _last_verdicts(activity: target_view.Activity | None) -> dict[str, Any] | None:
    """The newest cycle's recorded verdicts (shown when the live backlog read fails)."""
    for record in reversed(activity.history.cycles if activity else []):
        if record.tasks:
            return {"recorded_at": record.recorded_at, "commit_sha": record.commit_sha,
                    "selected_task": record.selected_task,
                    "tasks": [{**v.model_dump(), "title": "", "status": None, "rejected": None}
                              for v in record.tasks]}
    return None


def _target_context(target_id: str, target: Any | None, config_path: Path | None, days: int,
                    page: int) -> dict[str, Any]:
    """Everything the target page shows; ``target`` None while its file is broken (no backlog verdicts then)."""
    context: dict[str, Any] = {"state": None, "state_problem": None, "activity": None, "activity_problem": None,
                               "next_run": None, "may_run": False, "why_not": [], "backlog": None,
                               "last_verdicts": None, "dag_id": names.dag_id(target_id), "webhook": None,
                               "webhook_problem": None}
    global_enabled = True
    try:
        overview, _, _ = fleet.overview()
        global_enabled = context["global_enabled"] = overview.global_enabled
        state = next((t for t in overview.targets if t.target_id == target_id), None)
        context["state"] = state
        if state is None:
            context["state_problem"] = "not in the fleet overview (duplicate target_id?)"
        else:
            context["why_not"] = why_not(state, global_enabled)
            context["may_run"] = state.effective_enabled and not context["why_not"]
            context["next_run"] = target_view.next_runs([state.dag_id]).get(state.dag_id)
    except Exception as exc:  # noqa: BLE001 — shown as unknown
        context["state_problem"] = f"{type(exc).__name__}: {exc}"
    try:
        activity = target_view.activity(target_id, target, days=days)
        context["activity"] = activity
        context["charts"] = _charts(activity, days)
    except Exception as exc:  # noqa: BLE001 — shown as unknown
        log.warning("activity of %s: %s", target_id, exc)
        context["activity_problem"] = f"{type(exc).__name__}: {exc}"
        activity = None
    records = activity.records if activity else []
    start = (page - 1) * target_view.PAGE_SIZE
    context.update(records=records[start:start + target_view.PAGE_SIZE], page=page,
                   has_more=len(records) > start + target_view.PAGE_SIZE)
    if target is None or config_path is None:
        return context
    if target.webhooks:
        try:
            context["webhook"] = webhooks.last_deliveries({target_id}).get(target_id)
        except Exception as exc:  # noqa: BLE001 — shown as unknown
            context["webhook_problem"] = f"{type(exc).__name__}: {exc}"
    backlog = context["backlog"] = target_view.backlog_view(
        target, config_path, activity.history if activity else History(), activity.ledger if activity else None,
        global_autonomy=global_enabled)
    context["last_verdicts"] = _last_verdicts(activity) if backlog.unknown else None
    state = context["state"]
    if state is not None and not backlog.unknown:  # "May run now" is the decision's answer, never beside it
        context["why_not"] = why_not(state, global_enabled, decided=True) + decision_why_not(backlog)
        context["may_run"] = state.effective_enabled and not context["why_not"] and backlog.decision == "run"
    return context


def _add_pages(app: FastAPI) -> None:
    @app.get("/ui/icon.svg", summary="The nav icon (public: it is the same for everyone)")
    def icon() -> Response:
        return Response(ICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/ui", response_class=HTMLResponse, summary="The Leviathan view: the fleet")
    def fleet_page(request: Request, *, user: GetUserDep, credentials: BearerCredentials,
                   done: str | None = None) -> HTMLResponse:
        viewer = Viewer.of(request, user, credentials)
        switch.record_outside_changes()
        try:
            overview, histories, targets = fleet.overview()
            next_runs = target_view.next_runs([t.dag_id for t in overview.targets])
        except Exception as exc:  # noqa: BLE001 — a page saying what is unknown, never a 500
            log.exception("fleet overview failed")
            return _html(render("message.html", viewer, heading="Fleet state unknown", back=ROOT,
                                message=f"unknown: {type(exc).__name__}: {exc}"), 503)
        return _html(render_fleet(viewer, overview, histories, targets, next_runs=next_runs, notice=_notice(done),
                                  health=_health(overview), outside=_outside()))

    @app.get("/ui/targets/{target_id}", response_class=HTMLResponse, summary="One target: backlog, history")
    def target_page(request: Request, *, user: GetUserDep, credentials: BearerCredentials, target_id: str,
                    days: str = "7", page: str = "1", done: str | None = None) -> HTMLResponse:
        period, error = _period(days)
        number = min(int(page), 10_000) if page.isdigit() and int(page) > 0 else 1
        target, config_path, broken, missing = _find_target(target_id)
        context: dict[str, Any] = {"target_id": target_id, "target": target, "broken": broken, "missing": missing,
                                   "days": period, "periods": target_view.PERIODS, "reason_text": REASON_TEXT_BY_CODE,
                                   "max_rows": target_view.MAX_PERIOD_ROWS, "error": error, "notice": _notice(done)}
        if target is not None or broken:
            context["repo"] = redact_text(target.target_repo_url) if target else ""
            context.update(_target_context(target_id, target, config_path, period, number))
        header = _header()
        if context.get("state") is not None:
            header["global_enabled"] = context.pop("global_enabled")
        body = render("target.html", Viewer.of(request, user, credentials), **{**header, **context})
        return _html(body, 200 if target or broken else 404)

    @app.get("/ui/targets/{target_id}/prs/{number}", response_class=HTMLResponse, summary="A local-forge PR")
    def pr_page(request: Request, *, user: GetUserDep, credentials: BearerCredentials, target_id: str,
                number: int) -> HTMLResponse:
        target, config_path, broken, missing = _find_target(target_id)
        pr, problem = (None, missing or ("the target file cannot be used: fix it to open its PRs here" if broken
                                         else None))
        if target is not None and config_path is not None:
            pr, problem = target_view.local_pr(target, config_path, number)
        repo = redact_text(target.repo_location(config_path)) if target and config_path else ""
        body = render("pr.html", Viewer.of(request, user, credentials), **_header(), target_id=target_id,
                      number=number, pr=pr, problem=problem, repo=repo, max_diff=target_view.MAX_DIFF_CHARS,
                      diff=diff_lines(pr.diff) if pr else [])
        return _html(body, 200 if pr else 404)


def _configured(target_id: str) -> str:
    """The DAG of a target the folder names (a broken one too: it can be paused); 404 otherwise."""
    if target_id not in fleet.named_targets():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no configured target {target_id!r}")
    return names.dag_id(target_id)


Reason = Annotated[str, Form(max_length=500)]
Csrf = Annotated[str, Form()]


def _reason(reason: str) -> str:
    if not reason.strip():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "a reason is required: say why, it goes on the record")
    return reason.strip()


def _done(path: str, code: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?done={code}", status_code=status.HTTP_303_SEE_OTHER)


def _add_actions(app: FastAPI) -> None:
    @app.post("/ui/actions/autonomy", summary="Switch autonomy on or off globally (admin, form)")
    def autonomy_form(request: Request, *, user: AdminUser, credentials: BearerCredentials, enabled: Csrf,
                      csrf_token: Csrf = "", reason: Reason = "") -> Response:
        require_csrf(request, credentials, csrf_token)
        if enabled not in ("true", "false"):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "enabled must be true or false")
        switch.set_global(enabled == "true", by=user_name(user), reason=_reason(reason))
        return _done(ROOT, "autonomy-on" if enabled == "true" else "autonomy-off")

    def _target_switch(request: Request, *, user: Any, credentials: Any, target_id: str, enabled: bool,
                       csrf: str, reason: str) -> Response:
        require_csrf(request, credentials, csrf)
        dag = _configured(target_id)
        try:
            switch.set_target(target_id, dag, enabled, by=user_name(user), reason=_reason(reason))
        except switch.UnknownTarget as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return _done(f"{ROOT}/targets/{quote(target_id, safe='')}", "resumed" if enabled else "paused")

    @app.post("/ui/targets/{target_id}/pause", summary="Pause a target's DAG (admin, form)")
    def pause_form(request: Request, *, user: AdminUser, credentials: BearerCredentials, target_id: TargetId,
                   csrf_token: Csrf = "", reason: Reason = "") -> Response:
        return _target_switch(request, user=user, credentials=credentials, target_id=target_id, enabled=False,
                              csrf=csrf_token, reason=reason)

    @app.post("/ui/targets/{target_id}/resume", summary="Unpause a target's DAG (admin, form)")
    def resume_form(request: Request, *, user: AdminUser, credentials: BearerCredentials, target_id: TargetId,
                    csrf_token: Csrf = "", reason: Reason = "") -> Response:
        return _target_switch(request, user=user, credentials=credentials, target_id=target_id, enabled=True,
                              csrf=csrf_token, reason=reason)

    @app.post("/ui/targets/{target_id}/reset-breaker", summary="Close a target's circuit breaker (admin, form)")
    def reset_form(request: Request, *, user: AdminUser, credentials: BearerCredentials, target_id: TargetId,
                   csrf_token: Csrf = "", reason: Reason = "") -> Response:
        require_csrf(request, credentials, csrf_token)
        _configured(target_id)
        try:
            breaker.reset_breaker(target_id, by=user_name(user), reason=_reason(reason))
        except CodedError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return _done(f"{ROOT}/targets/{quote(target_id, safe='')}", "breaker-reset")

    @app.post("/ui/actions/reset-fleet-breaker", summary="Close the fleet breaker (admin, form)")
    def reset_fleet_form(request: Request, *, user: AdminUser, credentials: BearerCredentials,
                         csrf_token: Csrf = "", reason: Reason = "") -> Response:
        require_csrf(request, credentials, csrf_token)
        breaker.reset_fleet_breaker(by=user_name(user), reason=_reason(reason))
        return _done(ROOT, "fleet-breaker-reset")


def _add_error_pages(app: FastAPI) -> None:
    """Errors under ``/ui`` are pages a person can read (and sign in from); the API keeps its JSON errors."""

    def _page(request: Request, code: int, message: str) -> Response:
        heading = {401: "Sign in needed", 403: "Refused", 404: "Not found"}.get(code, "Cannot do that")
        if code == 401:
            message = f"{message}. Sign in to Airflow first: /auth/login/?next={ROOT}"
        return _html(render("message.html", Viewer("nobody", False, ""), heading=heading, message=message,
                            back=ROOT), code)

    def _ui(request: Request) -> bool:
        return request.url.path.startswith(ROOT) or request.scope.get("path", "").startswith("/ui")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not _ui(request):
            return await http_exception_handler(request, exc)
        return _page(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        if not _ui(request):
            return await request_validation_exception_handler(request, exc)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _page(request, 422, f"invalid request: {where}: {first.get('msg', 'invalid')}")


def add_view(app: FastAPI) -> None:
    _add_pages(app)
    _add_actions(app)
    _add_error_pages(app)
