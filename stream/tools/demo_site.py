"""`personastream demo-site`: a small shop instrumented with the browser tracker, to watch a visit's
persona change live.

The pages live in ``stream/web/site/`` (HTML fragments in one layout, CSS, JS, a product list) and are
served by aiohttp. Every page loads ``tracker.js`` from a worker (``--endpoint``) with its page id and
type as data- attributes; ``/config.js`` sets the tracker's config object (endpoint, intervals). The
banner shows what ``personastream.onPersona`` returns: the visit's newest PersonaEvent, from the
worker's ``GET /visits/{token}``. The worker must allow this site's origin
(``PERSONASTREAM_ALLOWED_ORIGINS=http://127.0.0.1:8000``). ``site/pages.csv`` is a page catalog for
``personastream pages seed``.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from aiohttp import ClientError, ClientSession, ClientTimeout, web

SITE = Path(__file__).resolve().parents[1] / "web" / "site"
CATALOG = SITE / "pages.csv"
CATEGORIES = {
    "running": ("Running", "Shoes and socks for roads and trails, tested for 200 km each."),
    "outdoor": ("Outdoor", "Shells, packs and lights for long days outside."),
}
_SLOT = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class SiteConfig:
    endpoint: str
    """a worker's web URL (scheme, host, port): where the tracker is loaded from and sends to."""
    heartbeat_s: float = 15.0
    flush_s: float = 5.0
    poll_s: float = 3.0


class Raw(str):
    """HTML that is inserted into a template as it is (everything else is escaped)."""


def endpoint_url(value: str) -> str:
    """``value`` as ``scheme://host[:port]``; ValueError if it is not an http(s) URL without a path."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") or parts.query:
        raise ValueError(f"endpoint must look like http://127.0.0.1:6066, got {value!r}")
    return f"{parts.scheme}://{parts.netloc}"


@cache
def _template(name: str) -> str:
    return (SITE / name).read_text(encoding="utf-8")


@cache
def products() -> list[dict]:
    return json.loads((SITE / "products.json").read_text(encoding="utf-8"))


def render(template: str, /, **values: object) -> str:
    """Template ``template`` with each ``{{slot}}`` replaced by its value, HTML-escaped unless :class:`Raw`."""
    def fill(match: re.Match) -> str:
        value = values.get(match.group(1), "")
        return value if isinstance(value, Raw) else html.escape(str(value))
    return _SLOT.sub(fill, _template(template))


def _initials(name: str) -> str:
    return "".join(word[0] for word in name.split()[:2]).upper()


def grid(items: list[dict], where: str) -> Raw:
    cards = []
    for p in items:
        a, b = p["art"]
        cards.append(
            f'<a class="card" href="/product/{p["slug"]}" data-ps-click="{where}-{p["slug"]}">'
            f'<div class="art" style="--a: {a}; --b: {b}"><span>{html.escape(_initials(p["name"]))}</span></div>'
            f'<div class="body"><div class="name">{html.escape(p["name"])}</div>'
            f'<div class="meta">★ {p["rating"]} · {p["reviews"]} reviews</div>'
            f'<div class="price">€{p["price"]:.2f}</div></div></a>')
    return Raw(f'<div class="grid">{"".join(cards)}</div>')


def _options(values: list[str], kind: str) -> Raw:
    return Raw("".join(f'<button type="button" data-ps-click="{kind}-{html.escape(v.replace(" ", "-"))}">'
                       f"{html.escape(v)}</button>" for v in values))


class DemoSite:
    def __init__(self, conf: SiteConfig) -> None:
        self.conf = conf

    def page(self, fragment: str, title: str, page_id: str, page_type: str, /, status: int = 200,
             query: str = "", **values: object) -> web.Response:
        content = Raw(render(fragment, **values))
        body = render("layout.html", content=content, title=title, endpoint=self.conf.endpoint, page_id=page_id,
                      page_type=page_type, query=query)
        return web.Response(text=body, status=status, content_type="text/html", headers=self.headers)

    @property
    def headers(self) -> dict[str, str]:
        worker = self.conf.endpoint
        return {
            "Cache-Control": "no-store",
            "Referrer-Policy": "strict-origin-when-cross-origin",
            # scripts from this site and the worker only; the tracker talks to the worker only
            "Content-Security-Policy": f"default-src 'self'; script-src 'self' {worker}; connect-src 'self' {worker}; "
                                       "style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        }

    async def home(self, request: web.Request) -> web.Response:
        favourites = [p for p in products() if p["slug"] in ("trail-runner", "rain-shell", "ridge-daypack")]
        return self.page("home.html", "Outdoor and running gear", "home", "home", grid=grid(favourites, "home"))

    async def category(self, request: web.Request) -> web.Response:
        slug = request.match_info["slug"]
        if slug not in CATEGORIES:
            return await self.not_found(request)
        name, lead = CATEGORIES[slug]
        items = [p for p in products() if p["category"] == slug]
        return self.page("category.html", name, f"category-{slug}", "category", category_name=name,
                         category_lead=lead, grid=grid(items, "category"))

    async def product(self, request: web.Request) -> web.Response:
        found = [p for p in products() if p["slug"] == request.match_info["slug"]]
        if not found:
            return await self.not_found(request)
        p = found[0]
        others = [o for o in products() if o["category"] == p["category"] and o is not p]
        return self.page("product.html", p["name"], f"product-{p['slug']}", "product", slug=p["slug"], name=p["name"],
                         category=p["category"], category_name=CATEGORIES[p["category"]][0], price=p["price"],
                         price_text=f"{p['price']:.2f}", summary=p["summary"], rating=p["rating"],
                         reviews=p["reviews"], art_a=p["art"][0], art_b=p["art"][1], initials=_initials(p["name"]),
                         colors=_options(p["colors"], "color"), sizes=_options(p["sizes"], "size"),
                         color_list=", ".join(p["colors"]), size_list=", ".join(p["sizes"]),
                         grid=grid(others, "also-like"))

    async def search(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "").strip()[:100]
        words = query.lower().split()
        hits = [p for p in products()
                if words and all(w in f"{p['name']} {p['category']} {p['summary']}".lower() for w in words)]
        lead = (f"{len(hits)} result{'s' if len(hits) != 1 else ''} for “{query}”" if query
                else "Type what you are looking for in the search box.")
        return self.page("search.html", "Search", "search", "search", query=query, search_lead=lead,
                         grid=grid(hits or products()[:3], "search"))

    async def cart(self, request: web.Request) -> web.Response:
        return self.page("cart.html", "Cart", "cart", "cart")

    async def checkout(self, request: web.Request) -> web.Response:
        return self.page("checkout.html", "Checkout", "checkout", "checkout")

    async def info(self, request: web.Request) -> web.Response:
        return self.page("info.html", "Delivery & returns", "info-delivery", "info")

    async def not_found(self, request: web.Request) -> web.Response:
        return self.page("notfound.html", "Not found", "not-found", "other", status=404)

    async def config_js(self, request: web.Request) -> web.Response:
        options = {"endpoint": self.conf.endpoint, "heartbeatSeconds": self.conf.heartbeat_s,
                   "flushSeconds": self.conf.flush_s, "pollSeconds": self.conf.poll_s}
        text = ("// personastream tracker options for this site (see README: Web)\n"
                f"window.personastream = Object.assign(window.personastream || {{}}, {json.dumps(options)});\n")
        return web.Response(text=text, content_type="application/javascript", headers={"Cache-Control": "no-store"})

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([
            web.get("/", self.home),
            web.get("/category/{slug}", self.category),
            web.get("/product/{slug}", self.product),
            web.get("/search", self.search),
            web.get("/cart", self.cart),
            web.get("/checkout", self.checkout),
            web.get("/info/delivery", self.info),
            web.get("/config.js", self.config_js),
            web.get("/favicon.ico", self.favicon),
            web.static("/css", SITE / "css"),
            web.static("/js", SITE / "js"),
        ])
        app.router.add_route("GET", "/{tail:.*}", self.not_found)
        return app


async def check_worker(endpoint: str, origin: str) -> str | None:
    """A warning if the worker at ``endpoint`` does not answer or does not allow ``origin``, else None."""
    try:
        async with ClientSession(timeout=ClientTimeout(total=5)) as session:
            async with session.get(f"{endpoint}/tracker.js", headers={"Origin": origin}) as response:
                allowed = response.headers.get("Access-Control-Allow-Origin")
                if response.status != 200:
                    return f"{endpoint}/tracker.js answered {response.status}"
    except (ClientError, asyncio.TimeoutError, OSError) as exc:
        return (f"no worker answers at {endpoint} ({exc.__class__.__name__}); start one with "
                f"PERSONASTREAM_ALLOWED_ORIGINS={origin} personastream worker --web-port {urlsplit(endpoint).port}")
    if allowed not in (origin, "*"):
        return (f"the worker at {endpoint} does not allow this site's origin: restart it with "
                f"PERSONASTREAM_ALLOWED_ORIGINS={origin}")
    return None


def serve(conf: SiteConfig, host: str = "127.0.0.1", port: int = 8000,
          log: Callable[[str], None] = print) -> None:
    """Serve the demo shop until interrupted (SIGINT/SIGTERM)."""
    origin = f"http://{host}:{port}"

    async def start(app: web.Application) -> None:
        async def warn() -> None:
            problem = await check_worker(conf.endpoint, origin)
            if problem:
                log(f"warning: {problem}")
        app["check"] = asyncio.ensure_future(warn())

    site = DemoSite(conf).app()
    site.on_startup.append(start)
    log(f"demo shop on {origin} (tracker and visit lookup from {conf.endpoint}); Ctrl-C stops it")
    web.run_app(site, host=host, port=port, print=None, access_log=None)
