"""URL safety policy: which URLs the agent may open and which addresses a webhook may reach.

Pure standard library and cheap to import: a leaf under the request model (which checks webhook
URLs, domain lists and the start URL with it) and the engine (every navigation of a run's browser).

- `check_navigation(url)` normalises a URL the model (or a user) asked to open and refuses non-web
  schemes, cloud metadata addresses (by name and by IP literal in any notation a browser accepts),
  and hosts outside the allow list / inside the block list.
- `request_blocked(url)` is the cheap, DNS-free test for requests the page itself makes (wire it
  into a Playwright route).
- `is_public_address(ip)` / `resolve_public(host, port)` decide whether a webhook may connect.

Hosts come from `agent.rules.urls`, which parses URLs as Chromium does (the WHATWG URL standard,
not `urllib.parse`), so that the host we check is the host the browser opens.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from agent.rules.urls import (
    DEFAULT_PORTS,
    MAX_URL_LENGTH,
    SCHEME_RE,
    SCHEME_WHY,
    WEB_SCHEMES,
    IPAddress,
    PolicyError,
    WebUrl,
    bare_scheme,
    clean_url,
    ip_literal,
    looks_like_host_port,
    parse_web,
)

__all__ = [
    "CLOUD_METADATA_HOSTS",
    "PolicyError",
    "check_navigation",
    "chromium_args",
    "chromium_host_rules",
    "check_domain_rules",
    "check_webhook_url",
    "domain_matches",
    "is_metadata_address",
    "is_public_address",
    "redact_url",
    "request_blocked",
    "resolve_public",
]


ALLOWED_ENV = "WORKBENCH_ALLOWED_DOMAINS"
BLOCKED_ENV = "WORKBENCH_BLOCKED_DOMAINS"
RESOLVE_TIMEOUT_S = 10.0
MAX_WEBHOOK_URL = 2048




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
    cleaned = clean_url(url)
    if not cleaned:
        raise PolicyError("url is empty: give a web address such as https://example.com")
    if len(cleaned) > MAX_URL_LENGTH:
        raise PolicyError(f"url is {len(cleaned)} characters long; the limit is {MAX_URL_LENGTH}")
    match = SCHEME_RE.match(cleaned)
    if match and not looks_like_host_port(match.group(1), match.group(2)):
        scheme = match.group(1).lower()
        if scheme == "about" and match.group(2).lower().split("#")[0] == "blank":
            return "about:blank"
        if scheme not in WEB_SCHEMES:
            why = SCHEME_WHY.get(scheme, "it is not a web address")
            raise PolicyError(
                f"scheme '{scheme}:' is not allowed ({why}): the agent opens only http:// and "
                "https:// URLs (and about:blank); give a web address such as https://example.com",
                reason="scheme",
            )
    else:
        # A bare "example.com/path" (or "localhost:8000/x"): the browser would guess a scheme.
        cleaned = cleaned.lstrip("/\\")
        cleaned = bare_scheme(cleaned) + "://" + cleaned
    parsed = parse_web(cleaned)
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


def check_webhook_url(url: str) -> str:
    """The webhook URL (trimmed) if it can be delivered to; PolicyError naming the fix otherwise (no DNS).

    The one check of a webhook URL: the request validates with it, delivery re-checks with it, and
    the address is checked again at each attempt (`resolve_public`).
    """
    fix = "e.g. https://example.com/hook"
    url = url.strip()
    if len(url) > MAX_WEBHOOK_URL:
        raise PolicyError(f"is {len(url)} characters long; the limit is {MAX_WEBHOOK_URL}")
    match = SCHEME_RE.match(url)
    rest = match.group(2) if match else ""
    if not match or match.group(1).lower() not in WEB_SCHEMES or not rest.startswith("//") or rest[2:3] in "/\\?#":
        raise PolicyError(f"must be an http:// or https:// URL with a host, {fix}", reason="scheme")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise PolicyError(f"must not contain spaces or control characters; {fix}")
    try:
        parsed = parse_web(url)
    except PolicyError as exc:
        raise PolicyError(f"is not a valid URL ({exc}); {fix}") from None
    if _is_metadata(parsed):
        raise PolicyError(f"points at {parsed.key}, a cloud metadata address, which is always refused; {fix}",
                          reason="metadata")
    if parsed.port == 0:
        raise PolicyError(f"has port 0, which nothing listens on; give a port from 1 to 65535, {fix}")
    return url


def check_domain_rules(entries: Sequence[str], field: str) -> None:
    """PolicyError naming `field` and the entry unless every entry is a domain or IP the lists can match."""
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise PolicyError(f"{field} entries must be non-empty host names such as 'example.com'", reason="config")
        _rule(entry, field)


def domain_matches(entries: Sequence[str], url: str) -> bool:
    """True when `url`'s host matches one of `entries` (as in allowed_domains); False for non-web URLs."""
    try:
        parsed = parse_web(clean_url(url))
    except PolicyError:
        return False
    if parsed.scheme not in WEB_SCHEMES:
        return False
    return any(_rule(entry, "sensitive_data").matches(parsed) for entry in entries)


def redact_url(url: str) -> str:
    """scheme://host:port/... only: URLs given to us (webhooks) often carry a token in the path or query."""
    try:
        parsed = parse_web(clean_url(url))
    except PolicyError:
        return "[redacted URL]"
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}/..."


def request_blocked(url: str) -> bool:
    """True when a request the page makes must be aborted (metadata address or file:); no DNS."""
    try:
        cleaned = clean_url(url)
        match = SCHEME_RE.match(cleaned)
        if not match:
            return False
        scheme = match.group(1).lower()
        if scheme == "file":
            return True
        if scheme not in DEFAULT_PORTS:
            return False  # data:, blob:, about: ... carry no network address
        parsed = parse_web(cleaned)
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
    literal = ip_literal(name)
    if literal is not None:
        addresses = [str(literal)]
    else:
        import asyncio  # here, not at the top: +35 ms (measured) on every `import agent.models`, for webhooks only
        import socket

        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
                timeout=timeout_s,
            )
        except TimeoutError:
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


def _is_metadata(parsed: WebUrl) -> bool:
    if parsed.ip is not None:
        return _is_metadata_ip(parsed.ip)
    return parsed.key in _METADATA_NAMES


def _refuse_metadata(parsed: WebUrl) -> None:
    if _is_metadata(parsed):
        raise PolicyError(
            f"'{parsed.key}' is a cloud metadata address; it is always refused because pages there "
            "hand out the machine's credentials",
            reason="metadata",
        )


# ------------------------------------------------------------------ URL parsing (WHATWG-like)


# ------------------------------------------------------------------ domain lists
@dataclass(frozen=True)
class _Rule:
    text: str  # as the user wrote it, for messages
    base: str  # matching key of the host
    is_ip: bool
    subdomains_only: bool

    def matches(self, url: WebUrl) -> bool:
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
        parsed = parse_web("https://" + host_part)
    except PolicyError as exc:
        raise PolicyError(f"{field} entry '{text}': {exc}", reason="config") from None
    if parsed.ip is not None and subdomains_only:
        raise PolicyError(f"{field} entry '{text}': an IP address has no subdomains; drop the '*.'", reason="config")
    return _Rule(text=text, base=parsed.key, is_ip=parsed.ip is not None, subdomains_only=subdomains_only)
