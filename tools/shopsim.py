"""A simulated web shop's tracker events, for tests, demos and docs; not a model of any real shop.

Each visit arrives on a diurnal and weekly pattern and gets a context (traffic source, visitor type,
device, region, local time) and a latent *mission* (bounce, browse, research, deal, focused,
support) drawn from that context, plus a latent buying *intent* (a logit): the mission's base,
shifted by source, returning visitor, device and time of day, plus Gaussian noise. The visit is a
Markov-like walk over the shop's pages whose length and moves depend on the mission; each product
view may add to the cart with a probability falling with intent and the price; with a cart the
visitor may go to the cart, check out and buy, with probabilities of intent and cart value, or
abandon. On every page the events are what ``stream/web/static/tracker.js`` sends: a page_view, 15 s
dwell heartbeats while visible, a dwell and the max scroll depth whenever the page is hidden, clicks
on tagged elements, and track() calls; the device fields are what the collector derives from the
User-Agent. About 2-3 % of visits are known crawlers: fast, regular page views, nothing else.

:class:`ShopConfig` is one shop (catalog, page id style, vocabularies, mixes, behaviour knobs);
``ShopConfig.random(seed)`` draws a different plausible one per seed. :func:`simulate` yields the
events of many visits in time order; :func:`visit_summary` measures the funnel rates.

    python -m tools.shopsim --visits 20000 --seed 3 --out events.jsonl [--start 2026-11-01] [--days 14]
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import string
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import orjson

MISSIONS = ("bounce", "browse", "research", "deal", "focused", "support")
_LETTERS = string.ascii_letters


@dataclass(frozen=True)
class Page:
    id: str
    type: str
    path: str

    def as_dict(self) -> dict:
        return {"id": self.id, "type": self.type, "path": self.path}


@dataclass(frozen=True)
class Product:
    sku: str
    """The ``product_id`` of cart events."""
    name: str
    """Plain words, e.g. "navy trail shoe"; search queries are made of them."""
    category: str
    price: float
    page: Page


@dataclass(frozen=True)
class Source:
    name: str
    """The site's own ``traffic_source`` slug, e.g. "google-cpc"."""
    kind: str
    """What the source is: a key of :data:`SOURCE_KINDS`."""
    weight: float
    referrer: str | None
    """Host of the landing page's referrer (None: no referrer is sent)."""


@dataclass(frozen=True)
class DeviceProfile:
    os: str
    browser: str
    device_class: str
    weight: float


@dataclass(frozen=True)
class ShopConfig:
    """Everything that defines one simulated shop."""

    name: str
    currency: str
    utc_offset_hours: int
    """The shop's local time, for the diurnal pattern."""
    home: Page
    search_page: Page
    cart_page: Page
    checkout_pages: tuple[Page, ...]
    thank_you: Page
    sale_page: Page
    category_pages: dict[str, Page]
    info_pages: tuple[Page, ...]
    account_pages: tuple[Page, ...]
    products: tuple[Product, ...]
    sources: tuple[Source, ...]
    devices: tuple[DeviceProfile, ...]
    regions: tuple[tuple[str, float], ...]
    click_targets: dict[str, str]
    """Canonical control (e.g. "add-to-cart") to the site's data-ps-click value."""
    returning_share: float
    bot_share: float
    mission_weights: dict[str, float]
    intent_shift: float
    """Added to every visit's buying intent (a logit)."""
    cart_propensity: float
    """Multiplies the chance of adding a viewed product to the cart."""
    session_length: float
    """Multiplies the planned number of page views of a visit."""
    price_sensitivity: float
    """Multiplies how much a price above the shop's median deters adding to the cart."""

    @classmethod
    def random(cls, seed: int) -> ShopConfig:
        """A plausible shop drawn from ``seed``: its vertical, market, catalog, vocabularies and knobs."""
        return _draw_shop(random.Random(f"shop-{seed}"), seed)


# -- vocabularies ---------------------------------------------------------------------------------

_VERTICALS: dict[str, tuple[float, tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    # median price in EUR, adjectives, category -> product nouns
    "fashion": (45.0, ("black", "white", "navy", "red", "beige", "olive", "pink", "grey", "striped", "linen"), {
        "dresses": ("midi dress", "maxi dress", "wrap dress", "shirt dress", "slip dress"),
        "tops": ("t-shirt", "blouse", "tank top", "shirt", "polo"),
        "jeans": ("slim jeans", "wide leg jeans", "straight jeans", "mom jeans"),
        "jackets": ("denim jacket", "puffer jacket", "blazer", "trench coat", "parka"),
        "knitwear": ("cardigan", "jumper", "turtleneck", "hoodie"),
        "accessories": ("scarf", "belt", "tote bag", "beanie", "cap")}),
    "shoes": (85.0, ("black", "white", "brown", "navy", "grey", "red", "tan", "green", "suede", "leather"), {
        "sneakers": ("low top sneaker", "high top sneaker", "canvas sneaker", "retro sneaker"),
        "running": ("trail shoe", "road running shoe", "racing flat", "walking shoe"),
        "boots": ("chelsea boot", "hiking boot", "ankle boot", "winter boot"),
        "sandals": ("slide", "sandal", "flip flop"),
        "formal": ("oxford shoe", "loafer", "derby shoe", "brogue")}),
    "electronics": (120.0, ("black", "white", "pro", "mini", "wireless", "silver", "compact", "max"), {
        "audio": ("wireless earbuds", "noise cancelling headphones", "bluetooth speaker", "soundbar"),
        "phones": ("smartphone", "phone case", "screen protector"),
        "computing": ("laptop", "laptop stand", "monitor", "keyboard", "mouse"),
        "smart-home": ("smart plug", "smart bulb", "video doorbell", "robot vacuum"),
        "cameras": ("mirrorless camera", "action camera", "camera lens", "tripod"),
        "power": ("usb-c charger", "power bank", "charging cable")}),
    "home": (55.0, ("oak", "white", "black", "linen", "ceramic", "brass", "grey", "green", "rattan"), {
        "lighting": ("floor lamp", "table lamp", "pendant light", "wall light"),
        "kitchen": ("chef knife", "frying pan", "dutch oven", "coffee grinder", "mug set"),
        "bedding": ("duvet cover", "pillow", "throw blanket", "fitted sheet"),
        "decor": ("vase", "mirror", "picture frame", "candle holder", "rug"),
        "furniture": ("side table", "bookshelf", "desk chair", "bench")}),
    "beauty": (22.0, ("hydrating", "matte", "vegan", "organic", "travel size", "sensitive", "vitamin c"), {
        "skincare": ("face cream", "serum", "cleanser", "sunscreen", "eye cream"),
        "makeup": ("lipstick", "mascara", "foundation", "concealer", "eyeshadow palette"),
        "haircare": ("shampoo", "conditioner", "hair oil", "hair mask"),
        "fragrance": ("eau de parfum", "body mist", "scented candle")}),
    "outdoor": (90.0, ("blue", "orange", "black", "green", "lightweight", "waterproof", "insulated", "red"), {
        "tents": ("2 person tent", "ultralight tent", "family tent", "tarp"),
        "backpacks": ("daypack", "hiking backpack", "trekking backpack", "hydration pack"),
        "clothing": ("rain jacket", "fleece", "softshell", "down jacket", "hiking pants"),
        "sleeping": ("sleeping bag", "sleeping pad", "camping pillow"),
        "climbing": ("harness", "climbing shoe", "chalk bag", "carabiner")}),
}

_MARKETS: dict[str, tuple[str, float, int, tuple[str, ...]]] = {
    # currency, price factor vs EUR, UTC offset, region codes (most visits first)
    "DE": ("EUR", 1.0, 1, ("DE-NW", "DE-BY", "DE-BW", "DE-NI", "DE-HE", "DE-BE", "DE-SN", "DE-RP", "DE-HH", "DE-SH")),
    "FR": ("EUR", 1.0, 1, ("FR-IDF", "FR-ARA", "FR-NAQ", "FR-OCC", "FR-HDF", "FR-PAC", "FR-GES", "FR-PDL", "FR-BRE")),
    "NL": ("EUR", 1.0, 1, ("NL-ZH", "NL-NH", "NL-NB", "NL-GE", "NL-UT", "NL-OV", "NL-LI")),
    "US": ("USD", 1.1, -6, ("US-CA", "US-TX", "US-FL", "US-NY", "US-PA", "US-IL", "US-OH", "US-GA", "US-WA", "US-MA")),
    "GB": ("GBP", 0.87, 0, ("GB-ENG", "GB-SCT", "GB-WLS", "GB-NIR")),
    "SE": ("SEK", 11.5, 1, ("SE-AB", "SE-O", "SE-M", "SE-E", "SE-C", "SE-Z")),
    "PL": ("PLN", 4.3, 1, ("PL-MZ", "PL-SL", "PL-WP", "PL-MA", "PL-DS", "PL-LD", "PL-PM")),
}
_WHOLE_PRICES = ("SEK", "PLN")

SOURCE_KINDS: dict[str, tuple[tuple[str, ...], tuple[str | None, ...], float]] = {
    # the site's possible names, referrer hosts, typical share of visits
    "direct": (("direct", "typein", "none"), (None,), 0.22),
    "organic": (("google", "organic", "seo", "google-organic"), ("www.google.com", "www.bing.com", None), 0.25),
    "paid_search": (("google-cpc", "cpc", "sea-google", "google_ads", "bing-cpc"), ("www.google.com",), 0.16),
    "social": (("instagram", "facebook", "tiktok", "pinterest", "social"),
               ("l.instagram.com", "m.facebook.com", "www.tiktok.com", "www.pinterest.com"), 0.13),
    "email": (("newsletter", "email", "nl-weekly", "klaviyo"), (None, "mail.google.com"), 0.08),
    "price_comparison": (("idealo", "google-shopping", "pricerunner", "shopping"),
                         ("www.idealo.de", "www.google.com", "www.pricerunner.com"), 0.07),
    "affiliate": (("affiliate", "awin", "partner", "coupons"), ("www.awin1.com", "www.mydealz.de", None), 0.05),
    "display": (("retargeting", "criteo", "display"), ("www.theguardian.com", "www.spiegel.de", None), 0.04),
}

_DEVICES: dict[str, tuple[tuple[str, str], ...]] = {
    "mobile": (("iOS 17.4", "Mobile Safari 17.4"), ("iOS 17.5", "Mobile Safari 17.5"),
               ("iOS 16.7", "Mobile Safari 16.6"), ("iOS 17.4", "Chrome Mobile iOS 124.0"),
               ("Android 14", "Chrome Mobile 124.0"),
               ("Android 13", "Chrome Mobile 123.0"), ("Android 14", "Samsung Internet 24.0"),
               ("Android 12", "Chrome Mobile 122.0"), ("Android 14", "Firefox Mobile 125.0")),
    "desktop": (("Windows 10", "Chrome 124.0"), ("Windows 10", "Edge 124.0"), ("Windows 10", "Firefox 125.0"),
                ("Mac OS X 14.4", "Chrome 124.0"), ("Mac OS X 14.4", "Safari 17.4"), ("Mac OS X 13.6", "Safari 16.6"),
                ("Linux", "Firefox 125.0"), ("Chrome OS 15786.0", "Chrome 124.0")),
    "tablet": (("iOS 17.4", "Mobile Safari 17.4"), ("Android 13", "Chrome 124.0"),
               ("Android 14", "Samsung Internet 24.0")),
}
_SCREENS = {"mobile": (("s", "m"), (0.96, 0.04)), "tablet": (("s", "m", "l"), (0.1, 0.8, 0.1)),
            "desktop": (("m", "l"), (0.25, 0.75))}
_BOTS = (("Other", "Googlebot 2.1"), ("Other", "bingbot 2.0"), ("Linux", "AhrefsBot 7.0"), ("Other", "SemrushBot 7.0"))

_CONTROLS = ("add-to-cart", "size-guide", "image-zoom", "reviews", "color-swatch", "wishlist", "product-card",
             "nav-menu", "checkout", "remove-item", "place-order", "search-result")
_INFO = ("shipping", "returns", "contact", "faq", "size-chart", "about")
_ACCOUNT = ("login", "order-status", "account")


# -- behaviour ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Mission:
    extra_pages: float
    """Mean planned page views after the landing page."""
    intent: float
    """Base buying intent (a logit)."""
    cart: float
    """Chance of adding a product to the cart on a product page, at intent 0 and the median price."""
    price_elasticity: float
    search: float
    dwell: float


_MISSION = {
    "bounce": _Mission(0.0, -9.0, 0.0, 0.0, 0.0, 0.7),
    "browse": _Mission(6.0, -1.6, 0.042, 1.0, 0.5, 0.9),
    "research": _Mission(7.0, -1.0, 0.042, 0.7, 1.6, 1.2),
    "deal": _Mission(4.5, -0.9, 0.085, 1.2, 1.0, 0.8),
    "focused": _Mission(2.5, 0.0, 0.5, 0.3, 1.6, 0.8),
    "support": _Mission(1.6, -6.0, 0.0, 0.0, 0.3, 1.2),
}

# mission multipliers (bounce, browse, research, deal, focused, support) by context
_MISSION_BY_SOURCE = {
    "direct": (0.8, 0.9, 0.9, 0.8, 1.7, 1.9), "organic": (1.2, 0.8, 1.4, 0.8, 0.8, 1.3),
    "paid_search": (1.1, 0.7, 1.2, 1.1, 1.6, 0.3), "social": (1.5, 1.5, 0.6, 0.9, 0.4, 0.2),
    "email": (0.8, 1.0, 0.7, 2.0, 1.2, 0.5), "price_comparison": (1.3, 0.4, 1.5, 1.6, 1.6, 0.1),
    "affiliate": (1.2, 0.8, 0.8, 2.0, 0.9, 0.2), "display": (1.8, 1.2, 0.5, 1.0, 0.5, 0.2),
}
_MISSION_BY_VISITOR = {"new": (1.0,) * 6, "returning": (0.65, 1.0, 1.0, 1.0, 1.8, 1.5)}
_MISSION_BY_DEVICE = {"mobile": (1.15, 1.2, 0.8, 1.0, 0.85, 1.0), "tablet": (1.0, 1.3, 0.9, 1.0, 0.9, 0.9),
                      "desktop": (0.85, 0.85, 1.3, 1.0, 1.15, 1.0)}
_INTENT_BY_SOURCE = {"direct": 0.2, "organic": 0.0, "paid_search": 0.1, "social": -0.4, "email": 0.3,
                     "price_comparison": 0.2, "affiliate": 0.0, "display": -0.5}
_INTENT_BY_DEVICE = {"mobile": -0.4, "tablet": -0.1, "desktop": 0.0}
_RETURNING_INTENT = 0.45
_INTENT_NOISE = 0.9

_LANDING = {  # landing page type weights (home, category, product, info) by source kind
    "direct": (0.85, 0.06, 0.06, 0.03), "organic": (0.2, 0.3, 0.35, 0.15), "paid_search": (0.1, 0.35, 0.55, 0.0),
    "social": (0.2, 0.3, 0.5, 0.0), "email": (0.3, 0.5, 0.2, 0.0), "price_comparison": (0.0, 0.05, 0.95, 0.0),
    "affiliate": (0.2, 0.3, 0.5, 0.0), "display": (0.2, 0.2, 0.6, 0.0),
}
_MOVES = ("home", "category", "product", "search", "info", "account")
_NEXT = {  # weights of the next page type by the current one
    "home": (0.0, 0.55, 0.17, 0.18, 0.07, 0.03), "category": (0.04, 0.16, 0.66, 0.1, 0.03, 0.01),
    "product": (0.05, 0.33, 0.44, 0.14, 0.03, 0.01), "search": (0.02, 0.1, 0.76, 0.12, 0.0, 0.0),
    "info": (0.25, 0.25, 0.1, 0.05, 0.25, 0.1), "account": (0.4, 0.2, 0.1, 0.05, 0.15, 0.1),
    "cart": (0.1, 0.4, 0.4, 0.1, 0.0, 0.0),
}
_MOVES_BY_MISSION = {  # multipliers of _MOVES weights (a bounce never moves)
    "browse": (1.0, 1.6, 1.0, 0.5, 0.5, 0.3), "research": (0.7, 0.8, 1.5, 1.6, 1.0, 0.5),
    "deal": (1.0, 1.3, 1.0, 1.0, 0.5, 0.3), "focused": (0.5, 0.6, 1.8, 1.6, 0.3, 0.8),
    "support": (1.0, 0.3, 0.3, 0.3, 6.0, 4.0),
}
_DWELL_MEDIAN = {"home": 9.0, "category": 17.0, "product": 32.0, "search": 11.0, "cart": 20.0, "checkout": 38.0,
                 "info": 28.0, "account": 18.0, "other": 14.0}
_DIURNAL = (0.22, 0.13, 0.08, 0.06, 0.06, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.05,
            1.15, 1.1, 1.0, 1.0, 1.05, 1.15, 1.3, 1.5, 1.65, 1.55, 1.1, 0.55)
_WEEKLY = (1.06, 1.02, 1.0, 0.98, 0.9, 0.88, 1.12)  # Monday .. Sunday


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# -- drawing a shop -------------------------------------------------------------------------------

def _draw_shop(rng: random.Random, seed: int) -> ShopConfig:
    vertical = rng.choice(sorted(_VERTICALS))
    base_price, adjectives, nouns_by_category = _VERTICALS[vertical]
    market = rng.choice(sorted(_MARKETS))
    currency, price_factor, utc_offset, market_regions = _MARKETS[market]
    style = rng.choice(("path", "prefixed", "dotted", "short"))

    categories = rng.sample(sorted(nouns_by_category), rng.randint(max(3, len(nouns_by_category) - 2),
                                                                      len(nouns_by_category)))
    median_price = base_price * price_factor * rng.lognormvariate(0.0, 0.35)
    price_spread = rng.uniform(0.45, 0.8)
    numbers = rng.sample(range(1000, 99999), rng.randint(60, 900))
    products: list[Product] = []
    category_level = {c: rng.lognormvariate(0.0, 0.3) for c in categories}
    for number in numbers:
        category = rng.choice(categories)
        name = f"{rng.choice(adjectives)} {rng.choice(nouns_by_category[category])}"
        price = _price_point(rng, median_price * category_level[category] * rng.lognormvariate(0.0, price_spread),
                             currency)
        products.append(Product(_sku(style, number, name), name, category, price,
                                _page(style, "product", _product_key(number, name))))

    kinds = ["direct", "organic"] + [k for k in sorted(SOURCE_KINDS) if k not in ("direct", "organic")
                                     and rng.random() < 0.8]
    sources = []
    for kind in kinds:
        names, referrers, share = SOURCE_KINDS[kind]
        sources.append(Source(rng.choice(names), kind, share * rng.lognormvariate(0.0, 0.2), rng.choice(referrers)))

    mobile = rng.uniform(0.58, 0.68)
    tablet = rng.uniform(0.03, 0.08)
    devices = []
    for device_class, share in (("mobile", mobile), ("tablet", tablet), ("desktop", 1.0 - mobile - tablet)):
        offered = _DEVICES[device_class]
        chosen = rng.sample(offered, rng.randint(max(2, len(offered) - 3), len(offered)))
        weights = [rng.paretovariate(1.5) for _ in chosen]
        devices += [DeviceProfile(os, browser, device_class, share * w / sum(weights))
                    for (os, browser), w in zip(chosen, weights)]

    region_case = rng.choice((str, str.lower, lambda code: code.replace("-", "_")))
    others = [r for m in sorted(_MARKETS) if m != market for r in _MARKETS[m][3][:2]]
    regions = [(region_case(code), 1.0 / (rank + 1) ** 0.9) for rank, code in enumerate(market_regions)]
    regions += [(region_case(code), 0.04) for code in rng.sample(others, 3)]

    click_style = rng.choice((lambda c: c, lambda c: c.replace("-", "_"), lambda c: "btn-" + c,
                              lambda c: c.split("-")[0] + "".join(w.title() for w in c.split("-")[1:])))
    steps = rng.choice((("details",), ("address", "payment"), ("login", "shipping", "payment")))
    mission_weights = {"bounce": 0.39, "browse": 0.24, "research": 0.14, "deal": 0.12, "focused": 0.07,
                       "support": 0.09}
    return ShopConfig(
        name=f"{vertical}-{market.lower()}-{seed}",
        currency=currency,
        utc_offset_hours=utc_offset,
        home=_page(style, "home", ""),
        search_page=_page(style, "search", ""),
        cart_page=_page(style, "cart", ""),
        checkout_pages=tuple(_page(style, "checkout", step) for step in steps),
        thank_you=_page(style, "other", "thank-you"),
        sale_page=_page(style, "category", "sale"),
        category_pages={c: _page(style, "category", c) for c in categories},
        info_pages=tuple(_page(style, "info", name) for name in _INFO),
        account_pages=tuple(_page(style, "account", name) for name in _ACCOUNT),
        products=tuple(products),
        sources=tuple(sources),
        devices=tuple(devices),
        regions=tuple(regions),
        click_targets={c: click_style(c) for c in _CONTROLS},
        returning_share=rng.uniform(0.28, 0.34),
        bot_share=rng.uniform(0.02, 0.03),
        mission_weights={m: w * rng.lognormvariate(0.0, 0.08) for m, w in mission_weights.items()},
        intent_shift=rng.uniform(-0.06, 0.06),
        cart_propensity=rng.lognormvariate(0.0, 0.05),
        session_length=rng.lognormvariate(0.0, 0.06),
        price_sensitivity=rng.uniform(0.8, 1.2),
    )


def _slug(name: str) -> str:
    return name.replace(" ", "-")


def _product_key(number: int, name: str) -> str:
    """``<number>-<slug>`` cut at a dash to under 32 characters: the schema scrubs longer runs of
    ``[A-Za-z0-9_-]`` in a path as random tokens."""
    key = f"{number}-{_slug(name)}"
    while len(key) >= 32:
        key = key.rsplit("-", 1)[0]
    return key


def _price_point(rng: random.Random, price: float, currency: str) -> float:
    """A shop's price: whole 9-ending amounts in SEK/PLN, else x.99, x.95 or x.00."""
    if currency in _WHOLE_PRICES:
        return float(max(9, round(price / 10) * 10 - 1))
    whole = max(1, int(price))
    return whole + rng.choice((0.99, 0.99, 0.95, 0.0))


def _sku(style: str, number: int, name: str) -> str:
    return {"path": str(number), "prefixed": f"SKU-{number}", "dotted": f"{_slug(name)}-{number}",
            "short": f"p{number}"}[style]


def _page(style: str, kind: str, key: str) -> Page:
    """A page in the shop's own id and path style; ``key`` is a slug ("" for home, search and cart)."""
    words = _PATH_WORDS[style == "path"]
    path = "/" if kind == "home" else f"/{words[kind]}/{key}".rstrip("/")
    number = key.split("-")[0] if kind == "product" else key
    if style == "path":
        page_id = path
    elif style == "prefixed":
        page_id = f"{_ID_WORDS[kind]}-{number}" if key else _ID_WORDS[kind]
    elif style == "dotted":
        page_id = f"{kind}.{key}" if key else kind
    else:
        page_id = f"{_SHORT_WORDS[kind]}_{number}" if key else _SHORT_WORDS[kind]
    return Page(page_id, kind, path)


_PATH_WORDS = {
    True: {"category": "c", "product": "p", "search": "search", "cart": "cart", "checkout": "checkout",
           "info": "help", "account": "account", "other": "checkout"},
    False: {"category": "collections", "product": "products", "search": "search", "cart": "basket",
            "checkout": "checkout", "info": "pages", "account": "my-account", "other": "order"},
}
_ID_WORDS = {"home": "home", "category": "cat", "product": "prod", "search": "search", "cart": "cart",
             "checkout": "checkout", "info": "info", "account": "account", "other": "page"}
_SHORT_WORDS = {"home": "hp", "category": "plp", "product": "pdp", "search": "srp", "cart": "basket",
                "checkout": "co", "info": "cms", "account": "my", "other": "confirm"}


# -- simulation -----------------------------------------------------------------------------------

class _Catalog:
    """Lookups of one shop used while simulating (cumulative weights, popularity, medians)."""

    def __init__(self, shop: ShopConfig, rng: random.Random) -> None:
        self.shop = shop
        popularity = [rng.lognormvariate(0.0, 0.9) for _ in shop.products]
        self.products = list(shop.products)
        self.cum_popularity = _cumulative(popularity)
        self.by_category: dict[str, tuple[list[Product], list[float]]] = {}
        for category in shop.category_pages:
            members = [(p, w) for p, w in zip(shop.products, popularity) if p.category == category]
            self.by_category[category] = ([p for p, _ in members], _cumulative([w for _, w in members]))
        cheap = sorted(shop.products, key=lambda p: p.price)[:max(5, len(shop.products) // 5)]
        self.sale = (cheap, _cumulative([1.0] * len(cheap)))
        log_prices = [math.log(p.price) for p in shop.products]
        self.log_median_price, self.log_price_spread = statistics.median(log_prices), statistics.stdev(log_prices)
        self.sources, self.cum_sources = list(shop.sources), _cumulative([s.weight for s in shop.sources])
        self.returning_sources = _cumulative([s.weight * (2.0 if s.kind in ("direct", "email") else 1.0)
                                              for s in shop.sources])
        self.devices, self.cum_devices = list(shop.devices), _cumulative([d.weight for d in shop.devices])
        self.regions = [code for code, _ in shop.regions]
        self.cum_regions = _cumulative([w for _, w in shop.regions])

    def price_level(self, amount: float) -> float:
        """How dear ``amount`` is in this shop: standard deviations of log price above the median."""
        return (math.log(amount) - self.log_median_price) / self.log_price_spread

    def product(self, rng: random.Random, category: str | None = None) -> Product:
        products, cum = self.by_category[category] if category else (self.products, self.cum_popularity)
        return rng.choices(products, cum_weights=cum)[0]


def _cumulative(weights: Iterable[float]) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


@lru_cache(maxsize=1 << 12)
def _minute(minute: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(minute * 60))


_SECONDS = tuple(f":{second:02d}." for second in range(60))
_MILLIS = tuple(f"{milli:03d}Z" for milli in range(1000))


def _iso(ms: int) -> str:
    """``ms`` (Unix milliseconds) as ISO 8601 UTC with milliseconds."""
    minute, rest = divmod(ms, 60_000)
    seconds, millis = divmod(rest, 1000)
    return _minute(minute) + _SECONDS[seconds] + _MILLIS[millis]


class _Visit:
    """Builds the events of one visit, in time order, as (epoch ms, event) pairs."""

    def __init__(self, catalog: _Catalog, rng: random.Random, start_ms: int, bot: bool) -> None:
        self.catalog, self.shop, self.rng = catalog, catalog.shop, rng
        self.ms = start_ms
        self.token = "".join(rng.choices(_LETTERS, k=22))
        self.events: list[tuple[int, dict]] = []
        self.last_ms = 0
        self.cart: dict[str, list] = {}  # sku -> [product, quantity]
        if bot:
            os, browser = rng.choice(_BOTS)
            self.device = {"os": os, "browser": browser, "device_class": "other", "screen": "l"}
            self.context = {"traffic_source": "direct", "visitor_type": "new", "region": "unknown", "bot": True}
            return
        returning = rng.random() < self.shop.returning_share
        cum_sources = catalog.returning_sources if returning else catalog.cum_sources
        self.source: Source = rng.choices(catalog.sources, cum_weights=cum_sources)[0]
        profile = rng.choices(catalog.devices, cum_weights=catalog.cum_devices)[0]
        screens, screen_weights = _SCREENS[profile.device_class]
        self.device = {"os": profile.os, "browser": profile.browser, "device_class": profile.device_class,
                       "screen": rng.choices(screens, screen_weights)[0]}
        self.context = {"traffic_source": self.source.name, "visitor_type": "returning" if returning else "new",
                        "region": rng.choices(catalog.regions, cum_weights=catalog.cum_regions)[0], "bot": False}
        self.mobile = profile.device_class == "mobile"
        weights = [self.shop.mission_weights[m] * s * v * d for m, s, v, d in zip(
            MISSIONS, _MISSION_BY_SOURCE[self.source.kind], _MISSION_BY_VISITOR[self.context["visitor_type"]],
            _MISSION_BY_DEVICE[profile.device_class])]
        self.mission = rng.choices(MISSIONS, weights)[0]
        self.traits = _MISSION[self.mission]
        local = time.gmtime(start_ms // 1000 + self.shop.utc_offset_hours * 3600)
        time_effect = (0.15 if 18 <= local.tm_hour <= 22 else -0.35 if local.tm_hour < 6 else 0.0) \
            + (0.1 if local.tm_wday >= 5 else 0.0)
        self.intent = (self.traits.intent + self.shop.intent_shift + _INTENT_BY_SOURCE[self.source.kind]
                       + (_RETURNING_INTENT if returning else 0.0) + _INTENT_BY_DEVICE[profile.device_class]
                       + time_effect + rng.gauss(0.0, _INTENT_NOISE))

    # -- events

    def _emit(self, ms: int, kind: str, page: Page, fields: dict | None = None) -> None:
        ms = self.last_ms = max(ms, self.last_ms + 1)
        event = {"event_id": f"{self.token}-{len(self.events) + 1}", "session_id": self.token, "ts": _iso(ms),
                 "type": kind, "page": page.as_dict(), "device": self.device.copy(), **self.context}
        if fields:
            event.update(fields)
        self.events.append((ms, event))

    def _show(self, page: Page, visible: float, actions: list[tuple[float, str, dict]],
              referrer: str | None = None) -> None:
        """One page view: the page_view, ``actions`` at their visible second, heartbeats, and the dwell
        and scroll depth reports of each hide (a tab switch, then leaving the page)."""
        rng = self.rng
        start = self.ms
        self._emit(start, "page_view", page, {"referrer": referrer} if referrer else None)
        gap_at, gap = None, 0.0
        if visible > 5 and rng.random() < (0.12 if self.mobile else 0.06):
            gap_at, gap = visible * rng.uniform(0.2, 0.9), min(1800.0, rng.lognormvariate(3.7, 1.0))
        timeline = [(at, 0, kind, fields) for at, kind, fields in actions]
        first_depth = rng.uniform(12, 28) if page.type == "product" and self.mobile else rng.uniform(25, 60)
        last_depth = first_depth + (100 - first_depth) * (1 - rng.random() ** (1 + visible / 30))
        settle = rng.uniform(8, 30)
        reported, segment_start = 0, 0.0
        for end in (gap_at, visible) if gap_at is not None else (visible,):
            beat = segment_start + 15 + rng.random() * 0.05
            last = segment_start
            while beat < end:
                timeline.append((beat, 1, "dwell", {"seconds": round(beat - last, 1)}))
                last, beat = beat, beat + 15 + rng.random() * 0.05
            if end - last >= 0.05:
                timeline.append((end, 1, "dwell", {"seconds": max(0.1, round(end - last, 1))}))
            depth = round(first_depth + (last_depth - first_depth) * (1 - math.exp(-end / settle)))
            if depth > reported:
                timeline.append((end, 2, "scroll", {"depth_pct": float(min(100, depth))}))
                reported = depth
            segment_start = end
        timeline.sort(key=lambda item: (item[0], item[1]))
        for at, _, kind, fields in timeline:
            wall = at + gap if gap_at is not None and at > gap_at else at
            self._emit(start + int(wall * 1000), kind, page, fields)
        self.ms = start + int((visible + gap) * 1000) + int(rng.lognormvariate(-0.3, 0.6) * 1000) + 1

    def _visible_seconds(self, page: Page) -> float:
        median = _DWELL_MEDIAN[page.type] * self.traits.dwell * (0.85 if self.mobile else 1.0)
        return min(900.0, max(1.0, median * self.rng.lognormvariate(0.0, 0.8)))

    def _click(self, at: float, control: str) -> tuple[float, str, dict]:
        return at, "click", {"target": self.shop.click_targets[control]}

    # -- the walk

    def bot_walk(self) -> list[tuple[int, dict]]:
        """A crawler: regular, fast page views of catalog pages, nothing else."""
        rng, shop = self.rng, self.shop
        pages = [shop.home, *shop.category_pages.values(), *shop.info_pages]
        interval = rng.uniform(1.0, 4.0)
        for _ in range(rng.randint(5, 60)):
            page = rng.choice(pages) if rng.random() < 0.3 else rng.choice(self.catalog.products).page
            self._emit(self.ms, "page_view", page)
            self.ms += int((interval + rng.uniform(-0.05, 0.05)) * 1000)
        return self.events

    def walk(self) -> list[tuple[int, dict]]:
        """A visitor's pages and actions, by mission and intent (see the module docstring)."""
        rng, shop, traits = self.rng, self.shop, self.traits
        planned = 1 if self.mission == "bounce" else 1 + max(
            0 if self.mission == "support" else 2,
            round(rng.gammavariate(1.6, traits.extra_pages * shop.session_length / 1.6)))
        if self.mission != "bounce" and rng.random() < 0.06:
            planned = 1  # left after the landing page all the same
        page, category, product = self._landing()
        referrer = self.source.referrer
        views = 0
        checkout_step: int | None = None
        while page is not None:
            views += 1
            visible = self._visible_seconds(page)
            actions: list[tuple[float, str, dict]] = []
            following: Page | None = None
            if page.type == "product":
                actions += self._product_actions(product, visible)
            if page is shop.cart_page:
                following = self._at_cart(visible, actions)
                checkout_step = None if following is None else 0
                if following is None and views < planned:  # back to browsing
                    following, category, product = self._move(page, category, product, visible, actions)
            elif checkout_step is not None and page.type == "checkout":
                following = self._at_checkout(checkout_step, visible, actions)
                checkout_step += 1
            elif page is shop.thank_you:
                following = None
            elif views >= planned:
                if self.cart and rng.random() < 0.5:
                    following = shop.cart_page
            elif self.cart and rng.random() < 0.2 + 0.4 * _sigmoid(self.intent):
                following = shop.cart_page
            else:
                following, category, product = self._move(page, category, product, visible, actions)
            self._show(page, visible, actions, referrer)
            referrer = None
            page = following
        return self.events

    def _landing(self) -> tuple[Page, str | None, Product | None]:
        rng, shop = self.rng, self.shop
        if self.mission == "support":
            kind = rng.choice(("home", "info", "info", "account"))
        else:
            kind = rng.choices(("home", "category", "product", "info"), _LANDING[self.source.kind])[0]
        if kind == "product":
            product = self.catalog.product(rng)
            return product.page, product.category, product
        if kind == "category":
            if self.mission == "deal" and rng.random() < 0.6:
                return shop.sale_page, None, None
            category = rng.choice(list(shop.category_pages))
            return shop.category_pages[category], category, None
        if kind == "info":
            return rng.choice(shop.info_pages), None, None
        if kind == "account":
            return rng.choice(shop.account_pages), None, None
        return shop.home, None, None

    def _move(self, page: Page, category: str | None, product: Product | None, visible: float,
              actions: list) -> tuple[Page, str | None, Product | None]:
        """The next page of the walk; a search is sent from the current page before it is left."""
        rng, shop, catalog = self.rng, self.shop, self.catalog
        weights = [w * m for w, m in zip(_NEXT[page.type], _MOVES_BY_MISSION[self.mission])]
        weights[3] *= self.traits.search
        kind = rng.choices(_MOVES, weights)[0]
        if kind == "home":
            return shop.home, None, None
        if kind == "info":
            return rng.choice(shop.info_pages), None, None
        if kind == "account":
            return rng.choice(shop.account_pages), None, None
        if kind == "category":
            if self.mission == "deal" and rng.random() < 0.4:
                return shop.sale_page, None, None
            category = rng.choice(list(shop.category_pages))
            actions.append(self._click(visible * rng.uniform(0.3, 0.95), "nav-menu"))
            return shop.category_pages[category], category, None
        if kind == "search":
            target = catalog.product(rng)
            actions.append((max(0.5, visible - rng.uniform(0.3, 2.0)), "search", {"query": self._query(target)}))
            return shop.search_page, target.category, target
        # a product: from a listing, a related product, or the search's result
        if page.type == "search" and product is not None and rng.random() < 0.7:
            chosen = product
        elif page is shop.sale_page:
            chosen = rng.choices(*catalog.sale)[0]
        else:
            stay = category if category and rng.random() < (0.85 if self.mission == "research" else 0.6) else None
            chosen = catalog.product(rng, stay)
            if self.mission == "deal":
                other = catalog.product(rng, chosen.category)
                chosen = min(chosen, other, key=lambda p: p.price)
        if page.type in ("category", "search"):
            control = "product-card" if page.type == "category" else "search-result"
            actions.append(self._click(visible * rng.uniform(0.5, 0.98), control))
        return chosen.page, chosen.category, chosen

    def _query(self, product: Product) -> str:
        rng = self.rng
        words = product.name.split(" ")
        query = rng.choice((product.name, " ".join(words[1:]), product.category.replace("-", " ")))
        if len(query) > 4 and rng.random() < 0.08:
            cut = rng.randrange(1, len(query) - 1)
            query = query[:cut] + query[cut + 1:]  # a typo
        return query

    def _product_actions(self, product: Product, visible: float) -> list[tuple[float, str, dict]]:
        rng, traits = self.rng, self.traits
        actions = []
        for control, chance in (("image-zoom", 0.25), ("reviews", 0.12), ("size-guide", 0.08),
                                ("color-swatch", 0.1), ("wishlist", 0.03)):
            if rng.random() < chance * (1.6 if self.mission == "research" else 1.0):
                actions.append(self._click(visible * rng.uniform(0.1, 0.9), control))
        # 1 at the median price, falling towards 0 above it and rising towards 2 below it
        price_effect = 2 * _sigmoid(-traits.price_elasticity * self.shop.price_sensitivity
                                    * self.catalog.price_level(product.price))
        chance = traits.cart * self.shop.cart_propensity * 2 * _sigmoid(self.intent) * price_effect
        if rng.random() < chance:
            at = visible * rng.uniform(0.4, 0.95)
            quantity = 1 if rng.random() < 0.87 else rng.choice((2, 2, 2, 3, 4))
            actions.append(self._click(at, "add-to-cart"))
            actions.append((at + 0.2, "add_to_cart", {"product_id": product.sku, "quantity": quantity,
                                                      "price": product.price}))
            line = self.cart.setdefault(product.sku, [product, 0])
            line[1] += quantity
        return actions

    def cart_value(self) -> float:
        return round(sum(product.price * quantity for product, quantity in self.cart.values()), 2)

    def _at_cart(self, visible: float, actions: list) -> Page | None:
        """On the cart page: maybe remove a line, then head to checkout (returned) or not (None)."""
        rng = self.rng
        if rng.random() < (0.2 if len(self.cart) > 1 else 0.05):
            sku = rng.choice(list(self.cart))
            product, quantity = self.cart[sku]
            removed = quantity if quantity == 1 or rng.random() < 0.5 else 1
            at = visible * rng.uniform(0.2, 0.7)
            actions.append(self._click(at, "remove-item"))
            actions.append((at + 0.2, "remove_from_cart", {"product_id": sku, "quantity": removed}))
            if removed == quantity:
                del self.cart[sku]
            else:
                self.cart[sku][1] -= removed
        if not self.cart:
            return None
        if rng.random() < _sigmoid(self.intent - 0.5 - 0.3 * self.catalog.price_level(self.cart_value())):
            actions.append(self._click(visible * rng.uniform(0.7, 0.98), "checkout"))
            return self.shop.checkout_pages[0]
        return None

    def _at_checkout(self, step: int, visible: float, actions: list) -> Page | None:
        """A checkout step: go on (the next step, or the purchase and thank-you page) or abandon."""
        rng, steps = self.rng, self.shop.checkout_pages
        if rng.random() > _sigmoid(self.intent + 1.5) ** (1 / len(steps)):  # a shop's steps share one chance
            return None
        if step + 1 < len(steps):
            return steps[step + 1]
        at = visible * rng.uniform(0.8, 0.97)
        actions.append(self._click(at, "place-order"))
        actions.append((at + 0.5, "purchase", {"value": self.cart_value(), "currency": self.shop.currency}))
        return self.shop.thank_you


def _arrivals(rng: random.Random, shop: ShopConfig, visits: int, start_ms: int, span_ms: int) -> list[tuple[int, bool]]:
    """Sorted (start ms, is bot) of ``visits`` visits: people on the shop's diurnal and weekly pattern
    in its local time, crawlers at any hour."""
    peak = max(_DIURNAL) * max(_WEEKLY)
    out = []
    offset_ms = shop.utc_offset_hours * 3_600_000
    for _ in range(visits):
        bot = rng.random() < shop.bot_share
        while True:
            at = start_ms + int(rng.random() * span_ms)
            local = time.gmtime((at + offset_ms) // 1000)
            if bot or rng.random() * peak < _DIURNAL[local.tm_hour] * _WEEKLY[local.tm_wday]:
                break
        out.append((at, bot))
    out.sort()
    return out


def simulate(config: ShopConfig, visits: int, start: datetime, seed: int, days: float = 14) -> Iterator[dict]:
    """The tracker events of ``visits`` visits to ``config``'s shop arriving over ``days`` days from
    ``start``, globally ordered by ts (visits interleave). Each event is a JSON object ``POST /collect``
    accepts, with the device fields the collector would add; deterministic for a given seed."""
    rng = random.Random(seed)
    catalog = _Catalog(config, random.Random(f"popularity-{seed}"))
    start_ms = int((start if start.tzinfo else start.replace(tzinfo=timezone.utc)).timestamp() * 1000)
    pending: list[tuple[int, int, int, list[tuple[int, dict]]]] = []  # (ms, visit, index, its events)
    for number, (arrival, bot) in enumerate(_arrivals(rng, config, visits, start_ms, int(days * 86_400_000))):
        while pending and pending[0][0] < arrival:
            yield _next(pending)
        visit = _Visit(catalog, rng, arrival, bot)
        events = visit.bot_walk() if bot else visit.walk()
        heapq.heappush(pending, (events[0][0], number, 0, events))
    while pending:
        yield _next(pending)


def _next(pending: list[tuple[int, int, int, list[tuple[int, dict]]]]) -> dict:
    """Pop the earliest pending event, queueing the next event of its visit."""
    _, number, index, events = pending[0]
    if index + 1 < len(events):
        heapq.heapreplace(pending, (events[index + 1][0], number, index + 1, events))
    else:
        heapq.heappop(pending)
    return events[index][1]


# -- measuring ------------------------------------------------------------------------------------

def visit_summary(events: Iterable[dict]) -> dict:
    """Funnel rates of the people's visits (crawlers only counted in ``bot_share``): conversion (share
    of visits with a purchase), cart abandonment (share of visits with an add_to_cart and no purchase
    among those with an add_to_cart), bounce (share with a single page view), median page views."""
    page_views: dict[str, int] = {}
    carted: set[str] = set()
    bought: set[str] = set()
    bots: set[str] = set()
    count = 0
    for event in events:
        count += 1
        session, kind = event["session_id"], event["type"]
        if event.get("bot"):
            bots.add(session)
            continue
        if kind == "page_view":
            page_views[session] = page_views.get(session, 0) + 1
        elif kind == "add_to_cart":
            carted.add(session)
        elif kind == "purchase":
            bought.add(session)
    people = len(page_views)
    return {
        "events": count,
        "visits": people + len(bots),
        "bot_share": len(bots) / max(1, people + len(bots)),
        "conversion": len(bought) / max(1, people),
        "cart_abandonment": len(carted - bought) / max(1, len(carted)),
        "bounce": sum(1 for n in page_views.values() if n == 1) / max(1, people),
        "median_page_views": statistics.median(page_views.values()) if page_views else 0,
    }


def _written(events: Iterable[dict], out: BinaryIO) -> Iterator[dict]:
    """``events``, each written to ``out`` as a JSON line as it passes."""
    for event in events:
        out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        yield event


def main(argv: list[str] | None = None) -> None:
    """Write a simulated shop's events as JSONL and print its summary rates."""
    parser = argparse.ArgumentParser(prog="python -m tools.shopsim", description=main.__doc__)
    parser.add_argument("--visits", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0, help="draws the shop and its visits")
    parser.add_argument("--out", type=Path, required=True, help="JSONL file, one event per line")
    parser.add_argument("--start", type=datetime.fromisoformat, default=datetime(2026, 11, 1, tzinfo=timezone.utc),
                        help="first day (UTC), ISO 8601")
    parser.add_argument("--days", type=float, default=14.0)
    args = parser.parse_args(argv)
    shop = ShopConfig.random(args.seed)
    began = time.perf_counter()
    with args.out.open("wb") as out:
        summary = visit_summary(_written(simulate(shop, args.visits, args.start, args.seed, args.days), out))
    elapsed = time.perf_counter() - began
    print(f"shop {shop.name}: {len(shop.products)} products, {shop.currency}, sources "
          f"{', '.join(s.name for s in shop.sources)}")
    print(f"{summary['events']:,} events of {summary['visits']:,} visits in {elapsed:.1f} s "
          f"({summary['events'] / elapsed:,.0f} events/s) -> {args.out}")
    print(" ".join(f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}"
                   for key, value in summary.items()))


if __name__ == "__main__":
    main()
