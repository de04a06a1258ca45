"""Server-rendered HTML for the eBAS pages: one layout, every interpolated value escaped.

Pages carry no scripts (the CSP allows only same-origin script files) and take their look from
``/static/ebas.css``.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from aiohttp import web

SITE_NAME = "全國主計網 eBAS"
AGENCY_NAME = "行政院主計總處"
FOOTER_TEXT = "行政院主計總處 全國主計網（eBAS）"
STYLESHEET = "/static/ebas.css"
LOGIN_PAGE = "/"


@dataclass(frozen=True)
class Html:
    """Markup that is already escaped; ``render`` inserts it as is."""

    markup: str


def text(value: object) -> Html:
    """Escape a value for HTML text or a quoted attribute."""
    return Html(escape(str(value), quote=True))


def join(*parts: Html | str) -> Html:
    """Concatenate markup; plain strings are escaped."""
    return Html("".join(p.markup if isinstance(p, Html) else escape(p, quote=True) for p in parts))


def tag(name: str, content: Html | str = "", **attributes: str) -> Html:
    """Build one element; ``class_`` sets the class attribute. Values are escaped, names are not."""
    rendered = "".join(
        f' {key.rstrip("_").replace("_", "-")}="{escape(value, quote=True)}"'
        for key, value in attributes.items()
    )
    body = content.markup if isinstance(content, Html) else escape(content, quote=True)
    return Html(f"<{name}{rendered}>{body}</{name}>")


def document(title: str, body: Html) -> str:
    """Wrap a page body in the shared layout.

    The header and footer repeat those of the login page (``static/index.html``). The referrer
    policy is same-origin because under no-referrer Chromium sends "Origin: null" on the logout
    form post, which the same-site check of /ebas/logout rejects.
    """
    return f"""<!doctype html>
<html lang="zh-Hant-TW">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{escape(title)} - {escape(SITE_NAME)}</title>
<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="{STYLESHEET}">
</head>
<body>
<header class="site-header">
<div class="site-header__inner">
<img class="site-header__logo" src="/static/img/logo.svg" alt="" width="44" height="44">
<div>
<p class="site-header__title">{escape(SITE_NAME)}</p>
<p class="site-header__agency">{escape(AGENCY_NAME)}</p>
</div>
</div>
</header>
<main class="card">
{body.markup}
</main>
<footer class="site-footer"><p>{escape(FOOTER_TEXT)}</p></footer>
</body>
</html>
"""


def html_response(title: str, body: Html, *, status: int = 200) -> web.Response:
    response = web.Response(
        text=document(title, body), status=status, content_type="text/html", charset="utf-8"
    )
    # Pages show personal data; no cache may keep them.
    response.headers["Cache-Control"] = "no-store"
    return response


def error_response(title: str, message: str, *, status: int) -> web.Response:
    """Render an error page with a link back to the login page."""
    body = join(
        tag("h1", title),
        tag("p", message, role="alert", class_="alert"),
        tag("p", tag("a", "回到登入頁", href=LOGIN_PAGE, class_="button")),
    )
    return html_response(title, body, status=status)
