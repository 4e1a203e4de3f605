"""What the Airflow UI shows red at a first login, read from the same REST endpoints the UI reads.

The demo prints it so that a red badge (``/api/v2/monitor/health``) or an import-error banner (DAGs:
``/api/v2/importErrors``, plugins: ``/api/v2/plugins/importErrors``) is never left unexplained.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: The health badges on the UI's dashboard, in its order; anything but "healthy" is drawn red.
BADGES = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def health_report(call: Callable[[str, str], Any]) -> list[str]:
    """One summary line, then one line per import error; ``call(method, path)`` is an authenticated REST call."""
    health = call("GET", "/api/v2/monitor/health")
    status = {name: (health.get(name) or {}).get("status") for name in BADGES}
    dag_errors = call("GET", "/api/v2/importErrors?limit=100")["import_errors"]
    plugin_errors = call("GET", "/api/v2/plugins/importErrors")["import_errors"]
    healthy = [name for name in BADGES if status[name] == "healthy"]
    parts = [f"{', '.join(healthy)} healthy"] if healthy else []
    parts += [f"{name} {status[name] or 'not running'}" for name in BADGES if name not in healthy]
    if dag_errors or plugin_errors:
        parts.append(f"{len(dag_errors)} DAG and {len(plugin_errors)} plugin import error(s)")
    else:
        parts.append("no DAG or plugin import errors")
    lines = [f"Health: {'; '.join(parts)}"]
    lines += [f"  DAG import error in {e['filename']}: {(e['stack_trace'].strip().splitlines() or [''])[-1]}"
              for e in dag_errors]
    lines += [f"  plugin import error: {e['source']}: {e['error']}" for e in plugin_errors]
    return lines
