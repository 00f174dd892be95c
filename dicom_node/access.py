"""Which calling AEs may associate: ``AET``, ``AET@host`` or ``*``.

The rule list comes from settings (``RADSCRIBE_DICOM_ALLOWED_AES``).  An empty
list allows nobody; ``*`` allows any caller.  ``AET@host`` also requires the
peer's IP address (or a host name that resolves to it) to match.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

WILDCARD = "*"
MAX_AE_TITLE_LENGTH = 16


class AccessRuleError(ValueError):
    """An allowed-AE entry is not ``*``, ``AET`` or ``AET@host``."""


@dataclass(frozen=True)
class AllowedCaller:
    ae_title: str
    host: str | None = None  # None: any host


def _check_ae_title(title: str, entry: str) -> str:
    title = title.strip()
    if not 1 <= len(title) <= MAX_AE_TITLE_LENGTH or not title.isascii() or "\\" in title:
        raise AccessRuleError(
            f"{entry!r}: an AE title is 1-{MAX_AE_TITLE_LENGTH} ASCII characters "
            "without a backslash"
        )
    return title


def parse_rule(entry: str) -> AllowedCaller | None:
    """Parse one entry; ``None`` stands for the wildcard."""
    entry = entry.strip()
    if entry == WILDCARD:
        return None
    title, sep, host = entry.partition("@")
    if sep and not host.strip():
        raise AccessRuleError(f"{entry!r}: host after '@' is empty")
    return AllowedCaller(_check_ae_title(title, entry), host.strip() if sep else None)


@dataclass(frozen=True)
class AccessPolicy:
    """Allowed callers; ``allow_any`` when the list contained ``*``."""

    callers: tuple[AllowedCaller, ...] = ()
    allow_any: bool = False

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> AccessPolicy:
        callers: list[AllowedCaller] = []
        allow_any = False
        for entry in entries:
            rule = parse_rule(entry)
            if rule is None:
                allow_any = True
            else:
                callers.append(rule)
        return cls(tuple(callers), allow_any)

    def allows(self, calling_ae: str, peer_address: str) -> bool:
        if self.allow_any:
            return True
        title = calling_ae.strip()
        return any(
            rule.ae_title == title and (rule.host is None or _host_matches(rule.host, peer_address))
            for rule in self.callers
        )


def _host_matches(rule_host: str, peer_address: str) -> bool:
    try:
        peer = ipaddress.ip_address(peer_address)
    except ValueError:
        return rule_host == peer_address
    try:
        return ipaddress.ip_address(rule_host) == peer
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(rule_host, None)
    except OSError:
        return False
    for info in infos:
        try:
            if ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) == peer:
                return True
        except ValueError:
            continue
    return False
