"""Leviathan's Airflow plugin: Spider under ``/leviathan`` on the API server, its UI link, and listeners.

Registered by the installed package's ``airflow.plugins`` entry point, so it loads with an empty plugins
folder. Cheap to import (Airflow imports plugins in every task process): the app is built on first use.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from leviathan_lib.orchestrator import listeners
from leviathan_lib.spider import URL_PREFIX, LazyApp


class LeviathanSpiderPlugin(AirflowPlugin):
    name = "leviathan_spider"
    fastapi_apps = [{"app": LazyApp("leviathan_lib.spider.app:create_app"), "url_prefix": URL_PREFIX,
                     "name": "Leviathan Spider"}]
    #: A top-level nav entry; the view renders inside the Airflow shell (an iframe under /plugin/leviathan).
    external_views = [{"name": "Leviathan", "href": f"{URL_PREFIX}/ui", "destination": "nav",
                       "url_route": "leviathan", "nav_top_level": True, "icon": f"{URL_PREFIX}/ui/icon.svg",
                       "icon_dark_mode": f"{URL_PREFIX}/ui/icon.svg"}]
    listeners = [listeners]
