"""How a console page is answered: its template, with what every page's frame needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template import TemplateConfig

from api.console.guard import console_session

__all__ = ("STATIC_DIR", "page", "template_config")

_HERE = Path(__file__).resolve().parent
STATIC_DIR = _HERE / "static"

NAV = (
    ("overview", "Overview"),
    ("requests", "Requests"),
    ("keys", "Keys"),
    ("channels", "Channels"),
    ("sessions", "Sessions"),
    ("playground", "Playground"),
)


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """The app's templates: the console's, rendered by Jinja with autoescaping on."""
    return TemplateConfig(directory=_HERE / "templates", engine=JinjaTemplateEngine)


def page(request: Request[Any, Any, Any], name: str, status: int = 200, **context: Any) -> Template:
    """A guarded page: ``name``'s template, with the navigation and the session's CSRF token."""
    return Template(
        template_name=f"{name}.html",
        context={"nav": NAV, "current": context.pop("current", name), "csrf": console_session(request).csrf, **context},
        status_code=status,
        media_type="text/html",
    )
