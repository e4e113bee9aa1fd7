"""/ui/: the playground page, static files shipped inside the package.

The files are public (no key): the page itself signs in, and every API call it makes carries the key.
Only the files that exist in ``assistd/web/static`` are served, read once and kept in memory: the set is
small and fixed at install time, and a name that is not in it cannot reach the file system.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse

from ..errors import NotFoundError

router = APIRouter(tags=["ui"], include_in_schema=False)

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
# The page changes with each release of the package; revalidating is cheap and avoids stale scripts.
# The page's URL says nothing worth leaking, but no page it links to needs to know it either; and no other
# site may frame it (frame-ancestors below, X-Frame-Options for browsers that predate it).
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# The page shows what models write: should anything slip through its escaping, the browser still runs
# only the package's own scripts and talks only to this server.
_PAGE_HEADERS = {
    **_HEADERS,
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data: https:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


@cache
def _assets() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("assistd.web").joinpath("static")
    found: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in _CONTENT_TYPES:
            found[entry.name] = (entry.read_bytes(), _CONTENT_TYPES[suffix])
    return found


def _serve(name: str) -> Response:
    asset = _assets().get(name)
    if asset is None:
        raise NotFoundError(f"No file '{name}' in the playground.")
    body, media_type = asset
    return Response(body, media_type=media_type, headers=_PAGE_HEADERS if name == "index.html" else _HEADERS)


@router.api_route("/ui", methods=["GET", "HEAD"])
async def ui_redirect() -> Response:
    return RedirectResponse("/ui/", status_code=308)


@router.api_route("/ui/", methods=["GET", "HEAD"])
async def ui_index() -> Response:
    return _serve("index.html")


@router.api_route("/ui/{name}", methods=["GET", "HEAD"])
async def ui_asset(name: str) -> Response:
    return _serve(name)
