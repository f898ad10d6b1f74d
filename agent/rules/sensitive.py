"""The shape of a request's `sensitive_data`: names, domain patterns and values a run can use.

A leaf under the request model; agent.engine.secrets types the values and scrubs them.

    {"password": "hunter2!"}                                   # any site
    {"https://*.example.com": {"password": "hunter2!"}}        # only on those hosts
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from agent.limits import MAX_SECRET_CHARS, MAX_SECRETS
from agent.rules.policy import PolicyError, check_domain_rules

__all__ = ["MIN_SECRET_CHARS", "NAME_RE", "check_sensitive_data"]

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
MIN_SECRET_CHARS = 3  # a shorter value would be hidden everywhere it appears on a page


def check_sensitive_data(value: Mapping[str, Any]) -> dict[str, Any]:
    """`value` if every name, domain pattern and value is usable; ValueError naming the fix otherwise."""
    count = 0
    for key, item in value.items():
        if isinstance(item, Mapping):
            try:
                check_domain_rules([key], "sensitive_data")
            except PolicyError as exc:
                raise ValueError(f"{exc} (a key whose value is an object is a domain pattern)") from None
            pairs = list(item.items())
        else:
            pairs = [(key, item)]
        for name, secret in pairs:
            count += 1
            if not NAME_RE.match(name):
                raise ValueError(f"name {name[:40]!r} must be letters, digits, _ . - (not first), e.g. 'password'")
            plain = secret.get_secret_value() if isinstance(secret, SecretStr) else str(secret)
            if not MIN_SECRET_CHARS <= len(plain) <= MAX_SECRET_CHARS:
                raise ValueError(f"the value of {name!r} must be {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} characters "
                                 "(a shorter one would be hidden wherever it appears on a page)")
    if count > MAX_SECRETS:
        raise ValueError(f"has {count} values; the limit is {MAX_SECRETS}")
    return dict(value)
