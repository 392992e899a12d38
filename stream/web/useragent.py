"""Coarse device fields from a User-Agent header, and whether it is a known crawler.

The collector derives these and forgets the header: the raw User-Agent is never forwarded, stored
or logged. Parsing uses ua-parser (the maintained uap-core rules) and crawler detection the
CrawlerDetect list.

>>> client_device("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
...               "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
ClientDevice(os='iOS', browser='Mobile Safari', device_class='mobile', bot=False)
>>> client_device("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)").bot
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crawlerdetect import CrawlerDetect
from ua_parser import parse

_CRAWLERS = CrawlerDetect()
_FAMILY = re.compile(r"[^A-Za-z0-9 ._-]")
_TABLETS = ("iPad", "Tablet", "Kindle", "Silk", "PlayBook", "Nexus 7", "Nexus 9", "Nexus 10")


@dataclass(frozen=True, slots=True)
class ClientDevice:
    os: str
    browser: str
    device_class: str
    """desktop, mobile, tablet or other (bots and unknown agents)."""
    bot: bool


UNKNOWN = ClientDevice("unknown", "unknown", "other", False)


def _family(value: object) -> str:
    return _FAMILY.sub("", str(value or "unknown"))[:32] or "unknown"


def client_device(user_agent: str | None) -> ClientDevice:
    """OS family, browser family, device class and crawler flag of ``user_agent``."""
    if not user_agent:
        return UNKNOWN
    user_agent = user_agent[:1024]
    bot = bool(_CRAWLERS.isCrawler(user_agent))
    parsed = parse(user_agent)
    os = _family(parsed.os.family if parsed.os else None)
    browser = _family(parsed.user_agent.family if parsed.user_agent else None)
    device = parsed.device.family if parsed.device else ""
    if bot or device == "Spider":
        return ClientDevice(os, browser, "other", True)
    tablet = any(mark in user_agent or mark in device for mark in _TABLETS)
    if tablet or (os == "Android" and "Mobile" not in user_agent):
        device_class = "tablet"
    elif "Mobi" in user_agent or device in ("iPhone", "iPod"):
        device_class = "mobile"
    elif os in ("Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora", "FreeBSD", "macOS"):
        device_class = "desktop"
    else:
        device_class = "other"
    return ClientDevice(os, browser, device_class, False)
