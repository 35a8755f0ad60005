"""The Playground page: chat with any served model, streamed, from the browser.

The page calls the gateway's own ``/v1/chat/completions`` with ``fetch`` (``static/playground.js``). In
keys mode the operator pastes an API key (made on the Keys page, where it is shown once); the page keeps
it in the tab's memory only. The console mints none itself: a key it made would outlive the tab.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from api.console.render import page
from api.state import gateway_state

__all__ = ("HANDLERS",)


@get("/playground")
async def playground(request: Request[Any, Any, Any]) -> Template:
    state = gateway_state(request)
    models = [name for name, _ in state.catalog.models()]
    return page(request, "playground", models=models, mode=state.settings.access.mode)


HANDLERS = (playground,)
