"""The browser dashboard at ``/`` and the offline API docs at ``/docs``, both from package files.

The dashboard is plain ES modules (``static/js``, no build step) talking the public wire protocol
over the HTTP port's own ``/ws`` (plus the public REST login); its libraries are vendored from
the npm registry with their licences (``static/vendor/README.md``), so nothing is loaded from a
CDN and both pages work on a machine without internet access. The page is served with a
Content-Security-Policy that allows only this origin, which is also what keeps it honest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC: Final = Path(__file__).parent / "static"
CSP: Final = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'"
)


def install_dashboard(app: FastAPI, ws_path: str) -> None:
    """Serve the dashboard at ``/`` (its WebSocket: ``ws_path`` on the same host and port)."""
    page = (STATIC / "index.html").read_text().replace("{{WS_PATH}}", ws_path)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})


def install_docs(app: FastAPI, openapi_url: str) -> None:
    """Swagger UI at ``/docs`` from the vendored ``swagger-ui-dist`` files."""
    vendor = "/static/vendor/swagger-ui"

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} — HTTP API",
            swagger_js_url=f"{vendor}/swagger-ui-bundle.js",
            swagger_css_url=f"{vendor}/swagger-ui.css",
            swagger_favicon_url=f"{vendor}/favicon-32x32.png",
        )
