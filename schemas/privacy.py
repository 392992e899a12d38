"""The privacy rule for every string personastream stores or publishes.

Events come from browser trackers we do not control, so any string may carry a personal
identifier. Every string field of an event goes through exactly one of these rules:

**Opaque identifiers** (``session_id`` 1-128, ``event_id`` 1-64 characters): only
``[A-Za-z0-9._:-]``, and the token must not be or contain an identifier (below); a token of
7-12 digits only counts as a phone number, of 13-19 as a card. Anything else **rejects the
event** (dead letter): these tokens key state and output, so they cannot be repaired.

**Context fields** (``region``, ``traffic_source``, ``device.os``, ``device.browser``,
``device.screen``; ``currency``): an allowlist of shapes. A value of the wrong type, the wrong
shape or containing an identifier is **replaced** by ``"unknown"`` (``currency``: ``None``), so
a sloppy producer's events still count. In ``device.os``/``device.browser`` a version with more
than two dotted parts is cut to ``major.minor`` (``"Chrome 120.0.0.0"`` -> ``"Chrome 120.0"``):
that removes fingerprinting detail and is why such versions are not mistaken for IPv4 addresses;
a value that *is* an IP address becomes ``"unknown"``.

**Free text** (``page.id``, ``page.path``, ``referrer``, ``search.query``, ``click.target``,
``product_id``, dead-letter payloads and reasons): passed through :func:`scrub`, which first
decodes common encodings (percent-encoding, ``\\u0040``/``\\x40``/``%u0040`` escapes, HTML
entities such as ``&#64;``/``&commat;``, Unicode compatibility forms such as fullwidth ``＠`` and
digits, invisible format characters) and the bracketed obfuscations ``(at)``/``[at]``/``{at}``/
``<at>`` and ``(dot)``..., then replaces

* emails with ``[email]`` (a local part followed by ``@``, with or without a domain; bare words
  " at "/" dot " are *not* read as ``@``/``.``: "shoes at example.com" is ordinary language),
* IPv4 addresses (optionally with ``:port``) and IPv6 addresses (full, compressed, ``::1``,
  IPv4-mapped, in brackets with a port, with a zone) with ``[ip]``; candidates are decided by
  :mod:`ipaddress`,
* payment card numbers with ``[card]``: 13-19 digits written as one run, or as groups of at most
  6 digits joined by single spaces, dashes or dots (no Luhn check: every such run counts),
* phone numbers with ``[phone]``: ``+`` followed by 8-15 digits in any grouping; North-American
  ``415-555-0172``/``(415) 555 0172``/``1 415 555 0172``; national numbers with a trunk ``0`` in
  two or more groups of 10-11 digits (``020 7946 0958``, ``06 12 34 56 78``); a ``00``-prefixed
  international number of 13+ digits is caught by the card rule and labelled a phone. A phone
  needs a ``+``, a trunk ``0`` or the 3-3-4 shape, because bare digit runs are everywhere in ids
  ("uci-12329-1066", hex digests, UUIDs, dates); a bare 10-digit number or a 7-digit local number
  without area code is not recognised in free text.

**Dead-letter payloads** are free text in which, besides, every quoted token (a JSON string, also
one cut off at the end) is judged by the rule of the opaque identifiers and replaced by its
placeholder if that rule rejects it as personal: whatever rejects an event for its ``session_id``
or ``event_id`` (``"4155550172"``) is not kept in its dead letter.

Digits glued to letters (``ab4111111111111111``) are not read as cards or phones, so random
tokens (UUIDs, ``secrets.token_urlsafe``, hex digests) are never mistaken for identifiers.
``page.path`` also loses its query and fragment, and long random tokens (32+ characters of
``[A-Za-z0-9_-]``: reset links, magic logins, order UUIDs) become ``[token]``; ``referrer`` is
reduced to its host. A value with nothing to replace is kept byte for byte (not decoded); a value
with an identifier is stored decoded, with the identifier replaced.

Most strings contain nothing to scrub: one cheap pre-check (:func:`_suspect`) that is true
whenever an identifier or an encoding could be present keeps the common case fast, and the
validators memoise their verdicts on values that repeat (session ids, page ids, context values).
"""

from __future__ import annotations

import html
import ipaddress
import re
import unicodedata
from urllib.parse import unquote, urlsplit

EMAIL, IP, CARD, PHONE, TOKEN, REDACTED = "[email]", "[ip]", "[card]", "[phone]", "[token]", "[redacted]"
UNKNOWN = "unknown"

MAX_SCRUB_BYTES = 1 << 20
"""Most of a dead-letter payload that is ever decoded and scrubbed; the rest is dropped."""
_CUT_MARGIN = 256
"""Characters dropped before a cut made *before* scrubbing: a partial identifier could end there."""
_DECODE_ROUNDS = 8

_SEP = r"(?: ?[.\-] ?| )"
"""How digit groups of a card or phone number are joined."""

_SPECIAL = b"@%\\&+()[]{}<>"
_DIGIT_SHAPE = bytes(ord("0") if chr(b).isdigit() else ord("x") for b in range(256))
"""Digits to ``0``, everything else to ``x`` (ASCII only: :func:`_suspect` has checked)."""


def _suspect(text: str) -> bool:
    """False only if ``text`` holds no identifier in any notation :func:`decode` undoes.

    Every identifier needs one of: a non-ASCII character or one of ``@ % \\ & + ( ) [ ] { } < >``
    (emails, encodings, ``+`` phones, ``(at)``, ``(415)``, ``[ipv6]``), three dots (IPv4), two
    colons (IPv6), or ten digits with nothing but spaces, dots and dashes between them (cards have
    13, phones without ``+``/parentheses 10). Keep this in step with the rules below. Monotone: a
    prefix of a text that is not suspect is not suspect. (Byte operations, not a regex: a regex
    pass costs 0.7-7 us per id, depending on its digits; these ~0.3 us.)
    """
    if not text.isascii():
        return True
    data = text.encode("ascii")
    size = len(data)
    if len(data.translate(None, _SPECIAL)) != size or data.count(b".") >= 3 or data.count(b":") >= 2:
        return True
    return size >= 10 and b"0000000000" in data.translate(_DIGIT_SHAPE, b" .-")


def memoised(rule, limit: int = 1 << 15, longest: int = 256):
    """``rule`` (a pure function of one value) with its results kept for up to ``limit`` distinct values.

    Session ids, page ids, paths, referrers and context values repeat from event to event. The
    cache is cleared when full, so a producer sending only new values costs one dict lookup more
    per value; strings longer than ``longest`` are not kept (memory stays a few MiB per rule).
    """
    cache: dict = {}
    missing = object()

    def cached(value):
        try:
            result = cache.get(value, missing)
        except TypeError:  # unhashable: a wrong type, never cached
            return rule(value)
        if result is missing:
            result = rule(value)
            if isinstance(value, str) and len(value) <= longest:
                if len(cache) >= limit:
                    cache.clear()
                cache[value] = result
        return result

    cached.__wrapped__ = rule
    cached.__doc__ = rule.__doc__
    return cached


# -- decoding -------------------------------------------------------------------------------------

_ESCAPE = re.compile(
    r"\\u\{([0-9A-Fa-f]{1,6})\}|\\u([0-9A-Fa-f]{4})|\\x([0-9A-Fa-f]{2})|\\U([0-9A-Fa-f]{8})|%u([0-9A-Fa-f]{4})")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_OBFUSCATED_AT = re.compile(r"\s{0,3}[(\[{<]\s{0,3}at\s{0,3}[)\]}>]\s{0,3}", re.IGNORECASE)
_OBFUSCATED_DOT = re.compile(r"\s{0,3}[(\[{<]\s{0,3}dot\s{0,3}[)\]}>]\s{0,3}", re.IGNORECASE)
# every repetition in these patterns is bounded or cannot backtrack: scrubbing stays linear in the text


def _char(code: int) -> str:
    return "\ufffd" if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF else chr(code)


def _unescape(match: re.Match[str]) -> str:
    return _char(int(next(group for group in match.groups() if group is not None), 16))


def _fold(match: re.Match[str]) -> str:
    ch = match.group()
    category = unicodedata.category(ch)
    if category == "Nd":
        return str(unicodedata.digit(ch))
    if category in ("Cf", "Cc"):
        return ""
    if category == "Pd":
        return "-"
    if category == "Zs":
        return " "
    if category == "Cs":
        return "\ufffd"
    return ch


def decode(text: str) -> str:
    """``text`` with common encodings of identifiers undone (see the module docstring)."""
    for _ in range(_DECODE_ROUNDS):
        before = text
        if "%" in text:
            text = unquote(_ESCAPE.sub(_unescape, text), errors="replace")
        if "\\" in text:
            text = _ESCAPE.sub(_unescape, text).replace("\\", "")
        if "&" in text:
            text = html.unescape(text)
        if not text.isascii():
            text = _NON_ASCII.sub(_fold, unicodedata.normalize("NFKC", text))
        if text == before:
            break
    if "(" in text or "[" in text or "{" in text or "<" in text:
        text = _OBFUSCATED_DOT.sub(".", _OBFUSCATED_AT.sub("@", text))
    return text


# -- detection ------------------------------------------------------------------------------------

_EMAIL = re.compile(r"[\w.+'-]{1,64}@(?:[\w-]+(?:\.[\w-]+)*)?")
_IPV4 = re.compile(
    r"(?<![0-9])(?<![0-9]\.)([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9]|\.[0-9])"
    r"(?::[0-9]{1,5}(?![0-9]))?")
_IPV6 = re.compile(
    r"(?<![A-Za-z0-9])(?:[0-9A-Fa-f]{0,4}:){2,8}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?")
_IPV6_TAIL = re.compile(r"%[A-Za-z0-9_.-]+|\](?::[0-9]{1,5})?|:[0-9]{1,5}(?![0-9A-Za-z:])")
"""After an address: a zone, a closing bracket and port, or a port written without brackets."""
_GROUP = r"(?:\([0-9]{1,6}\)|[0-9]+)"
_NUMBER = re.compile(
    rf"(?<![A-Za-z0-9])(?:\+ ?)?{_GROUP}(?:(?:{_SEP}|(?<=\)) ?|(?=\()){_GROUP})*(?![A-Za-z0-9])")
_DIGITS = re.compile(r"[0-9]+")
_LONG_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])")


def _ipv4(match: re.Match[str]) -> str:
    try:
        ipaddress.IPv4Address(".".join(str(int(octet)) for octet in match.groups()))
    except ValueError:
        return match.group()
    return IP


def _ipv6_spans(text: str) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []
    pos = 0
    while (match := _IPV6.search(text, pos)) is not None:
        candidate = match.group()
        span = _valid_ipv6(candidate)
        if span is None:  # try again from the next group (or past a run no address can span)
            pos = match.start() + 1
            if not candidate.strip(":"):
                pos = match.end()
            elif (triple := candidate.find(":::")) > 0:
                pos = match.start() + triple + 2
            continue
        start, end = match.start() + span[0], match.start() + span[1]
        if start > 0 and text[start - 1] == "[":
            start -= 1
        if (tail := _IPV6_TAIL.match(text, end)) is not None:
            end = tail.end()
        spans.append((start, end, IP))
        pos = max(end, match.start() + 1)
    return spans


def _valid_ipv6(candidate: str) -> tuple[int, int] | None:
    """Where in ``candidate`` an IPv6 address starts and ends, or None.

    Tries it without a stray leading or trailing colon, and without one or two trailing groups
    (``2001:db8:0:0:0:0:0:1:443``, an address with a port but no brackets). ``::`` alone, the
    unspecified address, is not an identifier.
    """
    start = 1 if candidate.startswith(":") and not candidate.startswith("::") else 0
    end = len(candidate)
    for _ in range(3):
        address = candidate[start:end]
        if address.endswith(":") and not address.endswith("::"):
            address = address[:-1]
        if address.count(":") >= 2 and address.strip(":") and ":::" not in address and address.count("::") <= 1:
            try:
                ipaddress.IPv6Address(address)
            except ValueError:
                pass
            else:
                return start, start + len(address)
        end = candidate.rfind(":", start, end - 1)
        if end <= start:
            break
    return None


def _number_spans(text: str) -> list[tuple[int, int, str]]:
    """Cards and phone numbers among the digit runs of ``text`` (rules in the module docstring)."""
    spans: list[tuple[int, int, str]] = []
    for run in _NUMBER.finditer(text):
        base = run.start()
        groups = [(base + g.start(), base + g.end()) for g in _DIGITS.finditer(run.group())]
        sizes = [end - start for start, end in groups]
        n = len(groups)
        i = 0
        if run.group().startswith("+"):
            total, last = 0, 0
            for k, size in enumerate(sizes):
                if k and total + size > 15:
                    break
                total, last = total + size, k
            if total >= 8:
                spans.append((run.start(), _close(text, groups[last][1]), PHONE))
                i = last + 1
        while i < n:
            phone, card = _phone(text, groups, sizes, i), _card(sizes, i)
            last, kind = (phone, PHONE) if phone >= card else (card, CARD)
            if kind == CARD and text.startswith("0", groups[i][0]):
                kind = PHONE  # 0044 20 7946 0958: card numbers never start with 0
            if last < 0:
                i += 1
                continue
            spans.append((_open(text, groups[i][0]), _close(text, groups[last][1]), kind))
            i = last + 1
    return spans


def _open(text: str, start: int) -> int:
    return start - 1 if start > 0 and text[start - 1] == "(" else start


def _close(text: str, end: int) -> int:
    return end + 1 if end < len(text) and text[end] == ")" else end


def _card(sizes: list[int], i: int) -> int:
    """Index of the last group of the longest card number starting at group ``i``, or -1."""
    best, total = -1, 0
    for j in range(i, len(sizes)):
        if j > i and (sizes[j] > 6 or sizes[i] > 6):
            break
        total += sizes[j]
        if total > 19:
            break
        if total >= 13:
            best = j
    return best


def _phone(text: str, groups: list[tuple[int, int]], sizes: list[int], i: int) -> int:
    """Index of the last group of a phone number starting at group ``i``, or -1."""
    if sizes[i:i + 3] == [3, 3, 4]:
        return i + 2
    if sizes[i:i + 4] == [1, 3, 3, 4] and text[groups[i][0]] == "1":
        return i + 3
    if text[groups[i][0]] != "0" or sizes[i] > 5:
        return -1
    best, total = -1, sizes[i]
    for j in range(i + 1, len(sizes)):
        total += sizes[j]
        if total > 11:
            break
        if total >= 10:
            best = j
    return best


def _replace(text: str, tokens: bool = False, ipv4: bool = True, strings: bool = False) -> str:
    """``text`` (already decoded) with every identifier replaced by its placeholder."""
    if strings and '"' in text:
        text = _STRING.sub(_judged_as_id, text)
    if "@" in text:
        text = _EMAIL.sub(EMAIL, text)
    if ":" in text:
        text = _splice(text, _ipv6_spans(text))
    if ipv4 and "." in text:
        text = _IPV4.sub(_ipv4, text)
    text = _splice(text, _number_spans(text))
    if tokens and len(text) >= 32:
        text = _LONG_TOKEN.sub(TOKEN, text)
    return text


def _splice(text: str, spans: list[tuple[int, int, str]]) -> str:
    if not spans:
        return text
    out, pos = [], 0
    for start, end, placeholder in spans:
        out.append(text[pos:start])
        out.append(placeholder)
        pos = end
    out.append(text[pos:])
    return "".join(out)


# -- the rules ------------------------------------------------------------------------------------


def scrub(text: str, tokens: bool = False, strings: bool = False) -> str:
    """``text`` with identifiers replaced by placeholders, in any of the notations :func:`decode` undoes.

    Returns ``text`` itself when it holds no identifier; otherwise its decoded form with the
    identifiers replaced. ``tokens`` also replaces long random tokens (for URL paths); ``strings``
    also judges every quoted token as an opaque id is judged (for dead-letter payloads).
    """
    if not strings and not _suspect(text) and not (tokens and len(text) >= 32 and _LONG_TOKEN.search(text)):
        return text
    decoded = decode(text)
    replaced = _replace(decoded, tokens, strings=strings)
    return text if replaced == decoded else replaced


def scrub_text(text: str, max_len: int = 200, tokens: bool = False, strings: bool = False) -> str:
    """:func:`scrub`, then cut to ``max_len`` characters without ever leaving an identifier at the cut.

    A cut can turn a harmless tail into an identifier (``4111111111111111x`` -> a card), so the
    cut text is scrubbed again; should that never settle, the result is ``[redacted]``.
    """
    text = scrub(text, tokens, strings)
    for _ in range(4):
        if len(text) <= max_len:
            return text
        text = scrub(text[:max_len], tokens, strings)
    text = text[:max_len]
    return text if scrub(text, tokens, strings) == text else REDACTED[:max_len]


def contains_identifier(value: str, ipv4: bool = True) -> str | None:
    """The placeholder of the first kind of identifier in ``value``, or None.

    Stricter than :func:`scrub` for short tokens: a value of 7-12 digits only is a phone, of 13-19
    a card (longer digit strings are neither). ``ipv4=False`` ignores dotted quads (versions).
    """
    if value.isdigit() and 7 <= len(value) <= 19:
        return CARD if len(value) >= 13 else PHONE
    if not _suspect(value):
        return None
    decoded = decode(value)
    replaced = _replace(decoded, ipv4=ipv4)
    if replaced == decoded:
        return None
    return min((p for p in (EMAIL, IP, CARD, PHONE) if p in replaced and p not in decoded),
               key=replaced.find, default=REDACTED)


_OPAQUE = re.compile(r"[A-Za-z0-9._:\-]+")
_STRING = re.compile(r'(?<=")[A-Za-z0-9._:\-]{1,128}(?="|$)')
"""A quoted token that could be an opaque id (also one cut off at the end of the text)."""


def _judged_as_id(match: re.Match[str]) -> str:
    return contains_identifier(match.group()) or match.group()
_KIND = {EMAIL: "an email address", IP: "an IP address", CARD: "a card number", PHONE: "a phone number",
         REDACTED: "an identifier"}


def opaque_problem(value: str, max_len: int) -> str | None:
    """Why ``value`` is not an acceptable opaque token (session or event id), or None if it is."""
    if not 0 < len(value) <= max_len or not _OPAQUE.fullmatch(value):
        return f"an opaque token of 1-{max_len} characters [A-Za-z0-9._:-]"
    kind = contains_identifier(value)
    if kind is not None:
        return f"an opaque token, not an email, IP address, card or phone number (looks like {_KIND[kind]})"
    return None


def context_value(value: object, shape: re.Pattern[str], default: str = UNKNOWN) -> str:
    """``value`` if it is a string of the allowed ``shape`` holding no identifier, else ``default``."""
    if not isinstance(value, str) or not shape.fullmatch(value):
        return default
    if contains_identifier(value) is not None:
        return default
    return value


_VERSION = re.compile(r"(?<![0-9.])([0-9]+\.[0-9]+)(?:\.[0-9]+)+")
_IP_ONLY = re.compile(r"\s*[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?::[0-9]{1,5})?\s*")


def device_value(value: object, shape: re.Pattern[str]) -> str:
    """A device os/browser: like :func:`context_value`, with versions cut to ``major.minor``."""
    if not isinstance(value, str) or not shape.fullmatch(value):
        return UNKNOWN
    if value.count(".") >= 2:
        if _IP_ONLY.fullmatch(value) or contains_identifier(value, ipv4=False) is not None:
            return UNKNOWN
        value = _VERSION.sub(r"\1", value)
    return context_value(value, shape)


def currency_value(value: object) -> str | None:
    """An ISO 4217-shaped currency code (upper-cased), or None."""
    if isinstance(value, str) and len(value) == 3 and value.isascii() and value.isalpha():
        return value.upper()
    return None


_AUTHORITY = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//[^/]*")


def scrub_path(path: str) -> str:
    """Keep only the path of a URL (no host, query or fragment), scrubbed, with long tokens replaced."""
    if "?" in path or "#" in path or ":" in path or path.startswith("//"):
        try:
            path = urlsplit(path).path
        except ValueError:  # e.g. an unclosed "[" in the host
            path = path.split("?", 1)[0].split("#", 1)[0]
            if (authority := _AUTHORITY.match(path)) is not None:
                path = path[authority.end():]
    return scrub_text(path or "/", max_len=256, tokens=True)


_HOST = re.compile(r"[a-z0-9.\-]{1,253}")
_LABEL = r"(?:\[(?:ip|email|card|phone)\]|[a-z0-9\-]+)"
_SCRUBBED_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
"""A host this function returned (``[ip]``, ``[phone].example.com``): kept, so scrubbing is idempotent."""


def scrub_referrer(referrer: str) -> str | None:
    """The referring host only (another site's path and query are never kept); None if there is none.

    A host that is an IP address becomes ``[ip]``; a host that is not a plain DNS name, None.
    """
    if referrer.startswith("[") and len(referrer) <= 253 and _SCRUBBED_HOST.fullmatch(referrer):
        return referrer
    try:
        host = urlsplit(referrer if "//" in referrer else f"//{referrer}").hostname
    except ValueError:
        return None
    if not host:
        return None
    if not _HOST.fullmatch(host):
        try:
            ipaddress.ip_address(host)
            return IP
        except ValueError:
            pass
        try:
            host = decode(host).encode("idna").decode("ascii").lower()
        except (UnicodeError, ValueError):
            return None
        if not _HOST.fullmatch(host):
            return None
    return scrub_text(host, max_len=253)


def safe_echo(value: object, max_len: int = 40) -> str:
    """A short, scrubbed rendering of an input value for an error message."""
    if isinstance(value, str):
        return repr(scrub_text(value, max_len))
    if value is None or isinstance(value, (bool, int, float)):
        return scrub_text(repr(value), max_len)
    return f"({type(value).__name__})"


def scrub_payload(raw: object, max_chars: int) -> tuple[str, list[str]]:
    """A record value as dead-letter text: decoded, scrubbed, then cut to ``max_chars``; and notes.

    Scrubbing sees the whole payload up to :data:`MAX_SCRUB_BYTES` (an identifier is never cut in
    half before it is recognised); a larger payload loses its tail, and the last
    :data:`_CUT_MARGIN` characters before that cut, before scrubbing.
    """
    notes: list[str] = []
    if raw is None:
        return "", ["no payload: the value was None (a Kafka tombstone, or no single record)"]
    if isinstance(raw, str):
        data = raw.encode("utf-8", errors="replace")
    elif isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
    else:
        return "", [f"record value was a {type(raw).__name__}, not bytes"]
    size = len(data)
    window = min(size, max(8 * max_chars, 1 << 13))
    while True:
        cut = size > window
        chunk = data[:window]
        text = chunk.decode("utf-8", errors="replace")
        if cut:
            text = text[:-_CUT_MARGIN] if len(text) > _CUT_MARGIN else ""
        scrubbed = scrub(text, strings=True)
        if not cut or len(scrubbed) >= max_chars + _CUT_MARGIN or window >= MAX_SCRUB_BYTES:
            break
        window = min(size, window * 4, MAX_SCRUB_BYTES)
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not cut or exc.start < len(chunk) - 4:
            notes.append("payload is not valid UTF-8 (invalid bytes shown as U+FFFD)")
    payload = scrub_text(scrubbed, max_chars, strings=True)
    if cut or len(scrubbed) > max_chars:
        notes.append(f"payload of {size} bytes truncated to {len(payload)} characters after scrubbing")
    return payload, notes
