"""The operator's console at ``/console``: server-rendered pages over the admin API and the request log.

Served by the API role whenever the admin API is on (its key is set). The pages are Jinja templates
(autoescaped) with a little plain JavaScript; the static files, the chart library (uPlot, vendored with
its licence) included, are package data.
"""

from __future__ import annotations

from litestar import Router
from litestar.static_files import create_static_files_router

from api.console import channels_page, keys_page, login, overview, playground, requests_page, sessions_page
from api.console.guard import PREFIX, require_session, security_headers
from api.console.render import STATIC_DIR, template_config

__all__ = ("console_routers", "template_config")


def console_routers() -> list[Router]:
    """The login routes, the guarded pages, and the static files, all under ``/console``."""
    guarded = [
        *login.GUARDED,
        *overview.HANDLERS,
        *requests_page.HANDLERS,
        *keys_page.HANDLERS,
        *channels_page.HANDLERS,
        *sessions_page.HANDLERS,
        *playground.HANDLERS,
    ]
    return [
        Router(PREFIX, route_handlers=list(login.OPEN), middleware=[security_headers], include_in_schema=False),
        Router(
            PREFIX,
            route_handlers=guarded,
            before_request=require_session,
            middleware=[security_headers],
            include_in_schema=False,
        ),
        create_static_files_router(
            f"{PREFIX}/static", directories=[STATIC_DIR], middleware=[security_headers], name="console-static"
        ),
    ]
