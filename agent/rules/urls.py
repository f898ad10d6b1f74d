"""Web URLs split the way Chromium splits them (WHATWG URL standard), with a canonical host.

The navigation and webhook policies (agent.rules.policy) check the host this parser finds, which
is the host the browser opens: `http:\\\\169.254.169.254\\@example.com/`, `http://0xA9FEA9FE/`,
`http://2852039166/` and `http://169.254.43518/` all mean 169.254.169.254. Pure standard library.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from encodings import idna  # stdlib nameprep: NFKC, case folding, ignorable characters dropped
from urllib.parse import unquote_to_bytes


class PolicyError(ValueError):
    """A URL or address the policy refuses; the message says why and what to change.

    `reason` is a short code: invalid, scheme, metadata, not_allowed, blocked, not_public, config.
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


MAX_URL_LENGTH = 16_384  # Chromium takes up to 2 MB; no task needs more than this


# Schemes refused with a specific word of explanation; any other non-http(s) scheme is refused too.
SCHEME_WHY = {
    "file": "it reads the machine's own files",
    "chrome": "it opens the browser's internal pages",
    "chrome-extension": "it opens browser extensions",
    "chrome-untrusted": "it opens the browser's internal pages",
    "devtools": "it opens the browser's developer tools",
    "javascript": "it runs script instead of opening a page",
    "data": "it builds a page from the URL itself",
    "blob": "it opens in-memory page data",
    "about": "only about:blank is allowed",
    "view-source": "it shows page source instead of the page",
    "ftp": "the browser no longer supports FTP",
    "filesystem": "it reads browser storage",
    "ws": "it is a WebSocket, not a page",
    "wss": "it is a WebSocket, not a page",
    "mailto": "it opens an email client",
    "tel": "it dials a phone number",
    "sms": "it sends a text message",
    "intent": "it launches an app",
}
WEB_SCHEMES = ("http", "https")


SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):(.*)$", re.DOTALL)


_BARE_PORT_RE = re.compile(r"^\d*(?:[/\\?#]|$)")


_EDGE_RE = re.compile(r"^[\x00-\x20]+|[\x00-\x20]+$")


# WHATWG "forbidden domain code points" (plus '%' once decoded): a host containing one is invalid.
_FORBIDDEN_HOST_CHARS = frozenset("\x00\t\n\r #/:<>?@[\\]^|%\x7f") | frozenset(chr(c) for c in range(0x20))


# Dots that IDNA treats as label separators.
_DOTS_RE = re.compile("[\u3002\uff0e\uff61]")


_DEVIATIONS_RE = re.compile("([\u00df\u03c2])")  # ß and final sigma


DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}


@dataclass(frozen=True)
class WebUrl:
    """A web URL split the way Chromium splits it, with a canonical host."""

    scheme: str
    userinfo: str  # "" or "user:pass@"
    host: str  # canonical form for the URL: domain, dotted IPv4, or [IPv6]
    key: str  # form used for matching: domain without trailing dot, or the IP's text
    ip: IPAddress | None
    port: int | None  # None = the scheme's default
    rest: str  # path, query and fragment as given ("/" when empty)

    def unparse(self) -> str:
        """The normalised URL."""
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{self.userinfo}{self.host}{port}{self.rest}"


def ip_literal(text: str) -> IPAddress | None:
    """An IP address in plain notation (as a resolver returns it), else None."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def clean_url(url: str) -> str:
    """Strip what browsers strip: surrounding spaces/controls and every tab or newline inside."""
    return _EDGE_RE.sub("", re.sub(r"[\t\n\r]", "", url))


def looks_like_host_port(scheme: str, rest: str) -> bool:
    """'localhost:8000/x' or 'example.com:443' is a bare host with a port, not a scheme."""
    if scheme.lower() in SCHEME_WHY or scheme.lower() in WEB_SCHEMES:
        return False
    return bool(_BARE_PORT_RE.match(rest)) and not rest.startswith(("/", "\\"))


def bare_scheme(text: str) -> str:
    """https for a bare host, http for the local machine (where dev servers speak plain http)."""
    probe = parse_web("https://" + text)
    local = probe.key == "localhost" or probe.key.endswith(".localhost")
    return "http" if local or (probe.ip is not None and probe.ip.is_loopback) else "https"


def parse_web(url: str) -> WebUrl:
    """Split an http(s)-like URL the way Chromium does; raise PolicyError if it is malformed."""
    match = SCHEME_RE.match(url)
    if not match:
        raise PolicyError(f"'{url[:80]}' is not a URL; give one such as https://example.com")
    scheme = match.group(1).lower()
    after = match.group(2)
    # Special schemes ignore any run of slashes and backslashes before the authority.
    after = after.lstrip("/\\")
    end = len(after)
    for i, ch in enumerate(after):
        if ch in "/\\?#":
            end = i
            break
    authority, rest = after[:end], after[end:]
    userinfo = ""
    if "@" in authority:
        creds, _, authority = authority.rpartition("@")
        userinfo = creds + "@"
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise PolicyError(f"host '{authority}' has an unclosed '['; write IPv6 hosts as [::1]")
        raw_host, port_text = authority[: close + 1], authority[close + 1 :]
        if port_text and not port_text.startswith(":"):
            raise PolicyError(f"unexpected '{port_text}' after the IPv6 host {raw_host}")
        port_text = port_text[1:]
    else:
        raw_host, _, port_text = authority.partition(":")
    host, key, ip = _canonical_host(raw_host)
    port: int | None = None
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
            raise PolicyError(f"port '{port_text}' is not a number from 0 to 65535")
        port = int(port_text)
        if port == DEFAULT_PORTS.get(scheme):
            port = None
    # Special schemes read a backslash in the path as a slash; the query and fragment keep theirs.
    cut = min([i for i in (rest.find("?"), rest.find("#")) if i >= 0], default=len(rest))
    rest = rest[:cut].replace("\\", "/") + rest[cut:]
    if not rest.startswith("/"):
        rest = "/" + rest
    return WebUrl(scheme=scheme, userinfo=userinfo, host=host, key=key, ip=ip, port=port, rest=rest)


def _canonical_host(raw: str) -> tuple[str, str, IPAddress | None]:
    """(host for the URL, key for matching, IP if it is one) of a raw authority host."""
    if not raw:
        raise PolicyError("the URL has no host; give one such as https://example.com")
    if raw.startswith("["):
        inner = raw[1:-1]
        try:
            if "%" in inner:
                raise ValueError("zone ids are not allowed in URLs")
            v6 = ipaddress.IPv6Address(inner)
        except ValueError:
            raise PolicyError(f"host '{raw}' is not a valid IPv6 address") from None
        return f"[{v6.compressed}]", v6.compressed, v6
    try:
        decoded = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(f"host '{raw}' has percent-escapes that are not UTF-8") from None
    domain = _domain_to_ascii(decoded, raw)
    if any(ch in _FORBIDDEN_HOST_CHARS for ch in domain):
        raise PolicyError(f"host '{raw}' contains characters a host name cannot have")
    if _ends_in_number(domain):
        v4 = parse_ipv4(domain)
        if v4 is None:
            raise PolicyError(f"host '{raw}' looks like an IPv4 address but is not a valid one")
        return str(v4), str(v4), v4
    return domain, domain.rstrip("."), None


def _domain_to_ascii(text: str, raw: str) -> str:
    """Lowercase ASCII form of a domain, mapped as Chromium maps it (UTS 46, non-transitional)."""
    text = _DOTS_RE.sub(".", text)
    if text.isascii():
        return text.lower()
    labels = []
    for label in text.split("."):
        if label.isascii():
            labels.append(label.lower())
            continue
        try:
            # nameprep (IDNA 2003) folds ß to "ss" and ς to σ; browsers now keep both, so map around them.
            pieces = _DEVIATIONS_RE.split(label)
            mapped = "".join(p if _DEVIATIONS_RE.fullmatch(p) else idna.nameprep(p) for p in pieces)
            labels.append(mapped if mapped.isascii() else "xn--" + mapped.encode("punycode").decode("ascii"))
        except UnicodeError:
            raise PolicyError(f"host '{raw}' is not a valid international domain name") from None
    return ".".join(labels)


def _ends_in_number(domain: str) -> bool:
    """WHATWG: a host whose last label is numeric must be an IPv4 address."""
    parts = domain.split(".")
    if parts[-1] == "":
        if len(parts) == 1:
            return False
        parts.pop()
    last = parts[-1]
    if last and last.isascii() and last.isdigit():
        return True
    return _ipv4_number(last) is not None


def _ipv4_number(part: str) -> int | None:
    if not part:
        return None
    radix = 10
    if part[:2] in ("0x", "0X"):
        part, radix = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        part, radix = part[1:], 8
    if part == "":
        return 0
    digits = {10: "0123456789", 16: "0123456789abcdefABCDEF", 8: "01234567"}[radix]
    if any(ch not in digits for ch in part):
        return None
    return int(part, radix)


def parse_ipv4(domain: str) -> ipaddress.IPv4Address | None:
    """WHATWG IPv4 parser: 1-4 parts, each decimal, octal (0..) or hex (0x..); the last fills the rest."""
    parts = domain.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        return None
    numbers = [_ipv4_number(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        return None
    total = values[-1]
    for i, n in enumerate(values[:-1]):
        total += n * 256 ** (3 - i)
    return ipaddress.IPv4Address(total)

