"""URL safety policy: which URLs the agent may open and which addresses a webhook may reach.

Pure standard library and cheap to import: the engine imports it eagerly.

- `check_navigation(url)` normalises a URL the model (or a user) asked to open and refuses non-web
  schemes, cloud metadata addresses (by name and by IP literal in any notation a browser accepts),
  and hosts outside the allow list / inside the block list.
- `request_blocked(url)` is the cheap, DNS-free test for requests the page itself makes (wire it
  into a Playwright route).
- `is_public_address(ip)` / `resolve_public(host, port)` decide whether a webhook may connect.

Host parsing follows the WHATWG URL standard (what Chromium does), not `urllib.parse`, so that the
host we check is the host the browser opens: `http:\\\\169.254.169.254\\@example.com/`,
`http://0xA9FEA9FE/`, `http://2852039166/` and `http://169.254.43518/` all mean 169.254.169.254.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import unquote_to_bytes

__all__ = [
    "CLOUD_METADATA_HOSTS",
    "PolicyError",
    "check_navigation",
    "chromium_args",
    "chromium_host_rules",
    "is_metadata_address",
    "is_public_address",
    "request_blocked",
    "resolve_public",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_ENV = "WORKBENCH_ALLOWED_DOMAINS"
BLOCKED_ENV = "WORKBENCH_BLOCKED_DOMAINS"
MAX_URL_LENGTH = 16_384  # Chromium takes up to 2 MB; no task needs more than this
RESOLVE_TIMEOUT_S = 10.0


class PolicyError(ValueError):
    """A URL or address the policy refuses; the message says why and what to change.

    `reason` is a short code: invalid, scheme, metadata, not_allowed, blocked, not_public, config.
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


# Names and addresses of cloud instance-metadata services (they hand out the machine's credentials).
CLOUD_METADATA_HOSTS: frozenset[str] = frozenset(
    {
        "169.254.169.254",  # AWS, Azure, GCP, OpenStack, DigitalOcean, Oracle, Hetzner, ...
        "fd00:ec2::254",  # AWS over IPv6
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "169.254.170.23",  # AWS EKS pod identity
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
        "169.254.0.23",  # Tencent Cloud
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
        "168.63.129.16",  # Azure WireServer
        "metadata",  # GCP short name (resolved through the search domain)
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",  # AWS
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.packet.net",
        "metadata.platformequinix.com",
    }
)
# Whole ranges refused by IP as well: all of IPv4 link-local (where metadata services live; nobody
# browses there) and AWS's IPv6 metadata prefix.
_METADATA_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fd00:ec2::/32"),
)
_METADATA_IPS: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(h) for h in CLOUD_METADATA_HOSTS if h[0].isdigit() or ":" in h
)
_METADATA_NAMES: frozenset[str] = frozenset(
    h for h in CLOUD_METADATA_HOSTS if not (h[0].isdigit() or ":" in h)
)

# Schemes refused with a specific word of explanation; any other non-http(s) scheme is refused too.
_SCHEME_WHY = {
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
_WEB_SCHEMES = ("http", "https")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):(.*)$", re.DOTALL)
_BARE_PORT_RE = re.compile(r"^\d*(?:[/\\?#]|$)")
_EDGE_RE = re.compile(r"^[\x00-\x20]+|[\x00-\x20]+$")
# WHATWG "forbidden domain code points" (plus '%' once decoded): a host containing one is invalid.
_FORBIDDEN_HOST_CHARS = frozenset("\x00\t\n\r #/:<>?@[\\]^|%\x7f") | frozenset(chr(c) for c in range(0x20))
# Dots that IDNA treats as label separators.
_DOTS_RE = re.compile("[\u3002\uff0e\uff61]")
_DEVIATIONS_RE = re.compile("([\u00df\u03c2])")  # ß and final sigma
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}


@dataclass(frozen=True)
class _Url:
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


# ------------------------------------------------------------------ public API
def check_navigation(
    url: str,
    *,
    allowed_domains: Sequence[str] | None = None,
    blocked_domains: Sequence[str] | None = None,
) -> str:
    """Return the normalised URL the agent may open, or raise PolicyError saying why not."""
    if not isinstance(url, str):
        raise PolicyError(f"url must be a string, got {type(url).__name__}")
    cleaned = _clean(url)
    if not cleaned:
        raise PolicyError("url is empty: give a web address such as https://example.com")
    if len(cleaned) > MAX_URL_LENGTH:
        raise PolicyError(f"url is {len(cleaned)} characters long; the limit is {MAX_URL_LENGTH}")
    match = _SCHEME_RE.match(cleaned)
    if match and not _looks_like_host_port(match.group(1), match.group(2)):
        scheme = match.group(1).lower()
        if scheme == "about" and match.group(2).lower().split("#")[0] == "blank":
            return "about:blank"
        if scheme not in _WEB_SCHEMES:
            why = _SCHEME_WHY.get(scheme, "it is not a web address")
            raise PolicyError(
                f"scheme '{scheme}:' is not allowed ({why}): the agent opens only http:// and "
                "https:// URLs (and about:blank); give a web address such as https://example.com",
                reason="scheme",
            )
    else:
        # A bare "example.com/path" (or "localhost:8000/x"): the browser would guess a scheme.
        cleaned = cleaned.lstrip("/\\")
        cleaned = _bare_scheme(cleaned) + "://" + cleaned
    parsed = _parse_web(cleaned)
    _refuse_metadata(parsed)
    allowed_from, allowed = _domain_rules(allowed_domains, "allowed_domains", ALLOWED_ENV)
    blocked_from, blocked = _domain_rules(blocked_domains, "blocked_domains", BLOCKED_ENV)
    for rule in blocked:
        if rule.matches(parsed):
            raise PolicyError(
                f"host '{parsed.key}' is blocked by the {blocked_from} entry '{rule.text}'; "
                f"remove that entry from {blocked_from} to allow it",
                reason="blocked",
            )
    if allowed and not any(rule.matches(parsed) for rule in allowed):
        listed = ", ".join(rule.text for rule in allowed)
        raise PolicyError(
            f"host '{parsed.key}' is not in {allowed_from} ({listed}); add it (e.g. '{parsed.key}') "
            f"to {allowed_from} to let the agent open it",
            reason="not_allowed",
        )
    return parsed.unparse()


def request_blocked(url: str) -> bool:
    """True when a request the page makes must be aborted (metadata address or file:); no DNS."""
    try:
        cleaned = _clean(url)
        match = _SCHEME_RE.match(cleaned)
        if not match:
            return False
        scheme = match.group(1).lower()
        if scheme == "file":
            return True
        if scheme not in _DEFAULT_PORTS:
            return False  # data:, blob:, about: ... carry no network address
        parsed = _parse_web(cleaned)
    except PolicyError:
        return False  # Chromium would not send an unparseable URL anyway
    return _is_metadata(parsed)


def is_public_address(ip: str) -> bool:
    """False for loopback, private, link-local, CGNAT, unique-local, multicast, reserved, metadata."""
    try:
        address = ipaddress.ip_address(ip.strip().strip("[]").split("%")[0])
    except ValueError:
        return False  # not an address at all: never treat as safe
    return _public(address)


def is_metadata_address(ip: str) -> bool:
    """True for a cloud metadata address (any IPv4 link-local, AWS/Alibaba/Azure/Oracle ones, IPv6 forms)."""
    try:
        address = ipaddress.ip_address(ip.strip().strip("[]").split("%")[0])
    except ValueError:
        return False
    return _is_metadata_ip(address)


async def resolve_public(host: str, port: int, *, timeout_s: float = RESOLVE_TIMEOUT_S) -> list[str]:
    """Resolve `host`; return its addresses, or raise PolicyError if ANY of them is not public.

    DNS failures raise OSError (a network problem worth retrying, not a policy refusal).
    """
    name = host.strip().strip("[]").lower().rstrip(".")
    if not name:
        raise PolicyError("the URL has no host; give one such as https://example.com/hook")
    if name in _METADATA_NAMES:
        raise PolicyError(
            f"host '{host}' is a cloud metadata service and is always refused", reason="metadata"
        )
    literal = _ip_literal(name)
    if literal is not None:
        addresses = [str(literal)]
    else:
        import asyncio  # here, not at the top: the engine imports this module eagerly
        import socket

        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
                timeout=timeout_s,
            )
        except asyncio.TimeoutError:
            raise OSError(f"could not resolve host '{host}': DNS did not answer in {timeout_s:g} s") from None
        except socket.gaierror as exc:
            raise OSError(f"could not resolve host '{host}': {exc.strerror or exc}") from None
        addresses = list(dict.fromkeys(str(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in infos))
        if not addresses:
            raise OSError(f"could not resolve host '{host}': no addresses")
    refused = [a for a in addresses if not is_public_address(a)]
    if refused:
        raise PolicyError(
            f"host '{host}' resolves to a non-public address ({', '.join(refused)}: loopback, private, "
            "link-local or metadata); use a public URL, or set WEBHOOK_ALLOW_PRIVATE=1 if you mean "
            "to reach an internal service",
            reason="not_public",
        )
    return addresses


def chromium_host_rules() -> str:
    """A Chromium --host-resolver-rules value under which metadata hosts never resolve.

    Playwright routes do not see the target of a server redirect, so a page on an allowed host can
    still bounce the browser to 169.254.169.254; these rules make Chromium itself refuse it.
    """
    rules = [f"MAP {name} ~NOTFOUND" for name in sorted(_METADATA_NAMES)]
    rules.append("MAP 169.254.* ~NOTFOUND")
    rules.append("MAP fd00:ec2:* ~NOTFOUND")
    v4_groups = ["a9fe:*"]  # 169.254.0.0/16 inside IPv6 forms
    for ip in sorted(_METADATA_IPS, key=str):
        if isinstance(ip, ipaddress.IPv4Address) and not ip.is_link_local:
            rules.append(f"MAP {ip} ~NOTFOUND")
            value = int(ip)
            v4_groups.append(f"{value >> 16:x}:{value & 0xFFFF:x}")
    for groups in v4_groups:  # IPv4-mapped, IPv4-compatible, NAT64 and 6to4 spellings
        rules += [f"MAP ::ffff:{groups} ~NOTFOUND", f"MAP ::{groups} ~NOTFOUND",
                  f"MAP 64:ff9b::{groups} ~NOTFOUND", f"MAP 2002:{groups.rstrip('*').rstrip(':')}:* ~NOTFOUND"]
    return ", ".join(dict.fromkeys(rules))


def chromium_args() -> list[str]:
    """Extra Chromium launch flags that enforce the metadata block inside the browser."""
    return [f"--host-resolver-rules={chromium_host_rules()}"]


# ------------------------------------------------------------------ addresses
_V4_NOT_PUBLIC = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches localhost on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT (and Alibaba's metadata address)
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",  # deprecated 6to4 relays
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
_V6_GLOBAL = ipaddress.IPv6Network("2000::/3")
_V6_NOT_PUBLIC = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments, including Teredo tunnels
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, IPv4-compatible), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (int(address) >> 32 == 0 and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _public(address: IPAddress) -> bool:
    if address in _METADATA_IPS:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        v4 = _embedded_v4(address)
        if v4 is not None:
            return _public(v4)
        return address in _V6_GLOBAL and not any(address in n for n in _V6_NOT_PUBLIC)
    return not any(address in n for n in _V4_NOT_PUBLIC)


def _is_metadata_ip(address: IPAddress) -> bool:
    if address in _METADATA_IPS or any(address in n for n in _METADATA_NETWORKS):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        v4 = _embedded_v4(address)
        return v4 is not None and _is_metadata_ip(v4)
    return False


def _is_metadata(parsed: _Url) -> bool:
    if parsed.ip is not None:
        return _is_metadata_ip(parsed.ip)
    return parsed.key in _METADATA_NAMES


def _refuse_metadata(parsed: _Url) -> None:
    if _is_metadata(parsed):
        raise PolicyError(
            f"'{parsed.key}' is a cloud metadata address; it is always refused because pages there "
            "hand out the machine's credentials",
            reason="metadata",
        )


def _ip_literal(text: str) -> IPAddress | None:
    """An IP address in plain notation (as a resolver returns it), else None."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


# ------------------------------------------------------------------ URL parsing (WHATWG-like)
def _clean(url: str) -> str:
    """Strip what browsers strip: surrounding spaces/controls and every tab or newline inside."""
    return _EDGE_RE.sub("", re.sub(r"[\t\n\r]", "", url))


def _looks_like_host_port(scheme: str, rest: str) -> bool:
    """'localhost:8000/x' or 'example.com:443' is a bare host with a port, not a scheme."""
    if scheme.lower() in _SCHEME_WHY or scheme.lower() in _WEB_SCHEMES:
        return False
    return bool(_BARE_PORT_RE.match(rest)) and not rest.startswith(("/", "\\"))


def _bare_scheme(text: str) -> str:
    """https for a bare host, http for the local machine (where dev servers speak plain http)."""
    probe = _parse_web("https://" + text)
    local = probe.key == "localhost" or probe.key.endswith(".localhost")
    return "http" if local or (probe.ip is not None and probe.ip.is_loopback) else "https"


def _parse_web(url: str) -> _Url:
    """Split an http(s)-like URL the way Chromium does; raise PolicyError if it is malformed."""
    match = _SCHEME_RE.match(url)
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
        if port == _DEFAULT_PORTS.get(scheme):
            port = None
    # Special schemes read a backslash in the path as a slash; the query and fragment keep theirs.
    cut = min([i for i in (rest.find("?"), rest.find("#")) if i >= 0], default=len(rest))
    rest = rest[:cut].replace("\\", "/") + rest[cut:]
    if not rest.startswith("/"):
        rest = "/" + rest
    return _Url(scheme=scheme, userinfo=userinfo, host=host, key=key, ip=ip, port=port, rest=rest)


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
        v4 = _parse_ipv4(domain)
        if v4 is None:
            raise PolicyError(f"host '{raw}' looks like an IPv4 address but is not a valid one")
        return str(v4), str(v4), v4
    return domain, domain.rstrip("."), None


def _domain_to_ascii(text: str, raw: str) -> str:
    """Lowercase ASCII form of a domain, mapped as Chromium maps it (UTS 46, non-transitional)."""
    text = _DOTS_RE.sub(".", text)
    if text.isascii():
        return text.lower()
    from encodings import idna  # stdlib nameprep: NFKC, case folding, ignorable characters dropped

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


def _parse_ipv4(domain: str) -> ipaddress.IPv4Address | None:
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


# ------------------------------------------------------------------ domain lists
@dataclass(frozen=True)
class _Rule:
    text: str  # as the user wrote it, for messages
    base: str  # matching key of the host
    is_ip: bool
    subdomains_only: bool

    def matches(self, url: _Url) -> bool:
        if self.is_ip or url.ip is not None:
            return self.is_ip and url.ip is not None and self.base == url.key
        if url.key == self.base:
            return not self.subdomains_only
        return url.key.endswith("." + self.base)


def _domain_rules(
    given: Sequence[str] | None, field: str, env: str
) -> tuple[str, tuple[_Rule, ...]]:
    """(name to cite in messages, parsed rules) from the argument, or the env var when it is None."""
    if given is None:
        raw = os.environ.get(env, "")
        return env, tuple(_rule(e, env) for e in re.split(r"[,\s]+", raw) if e.strip())
    if isinstance(given, str):
        given = [e for e in re.split(r"[,\s]+", given) if e]
    return field, tuple(_rule(e, field) for e in given if e and e.strip())


@functools.lru_cache(maxsize=1024)  # the same lists are checked on every navigation
def _rule(entry: str, field: str) -> _Rule:
    text = entry.strip()
    body = text.lower()
    subdomains_only = False
    if "://" in body:
        body = body.split("://", 1)[1]
    if body.startswith("*."):
        body, subdomains_only = body[2:], True
    host_part = re.split(r"[/\\?#]", body, maxsplit=1)[0]
    if not host_part or "*" in host_part:
        raise PolicyError(
            f"{field} entry '{text}' is not a domain: write 'example.com' (it and its subdomains) "
            "or '*.example.com' (subdomains only)",
            reason="config",
        )
    try:
        parsed = _parse_web("https://" + host_part)
    except PolicyError as exc:
        raise PolicyError(f"{field} entry '{text}': {exc}", reason="config") from None
    if parsed.ip is not None and subdomains_only:
        raise PolicyError(f"{field} entry '{text}': an IP address has no subdomains; drop the '*.'", reason="config")
    return _Rule(text=text, base=parsed.key, is_ip=parsed.ip is not None, subdomains_only=subdomains_only)
