"""The client's address: the ASGI peer, or what trusted proxies say in `X-Forwarded-For`."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """CIDRs (a bare address means just that address)."""
    return [ipaddress.ip_network(value.strip(), strict=False) for value in values]


# The same few addresses come again and again; `ipaddress` parsing costs microseconds.
@functools.lru_cache(maxsize=4096)
def _parse_address(value: str) -> IPAddress | None:
    value = value.strip()
    if value.startswith("["):  # "[2001:db8::1]:443"
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # "203.0.113.7:5123"
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def _forwarded_for(scope: Mapping[str, Any]) -> list[str]:
    values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"]
    return [part for value in values for part in value.split(",") if part.strip()]


def client_address(scope: Mapping[str, Any], trusted_proxies: Sequence[IPNetwork]) -> str | None:
    """The peer of the connection, unless it is a trusted proxy: then `X-Forwarded-For` is
    walked from the right (the entry our own proxy appended) past every trusted hop, and the
    first untrusted address is the client. Entries left of it were written by the client
    and are never believed. An unparsable entry stops the walk at the hop that reported it.
    """
    client = scope.get("client")
    if not client:
        return None
    peer = _parse_address(str(client[0]))
    if peer is None:
        return str(client[0])
    if not trusted_proxies or not _is_trusted(peer, trusted_proxies):
        return str(peer)
    current = peer
    for entry in reversed(_forwarded_for(scope)):
        hop = _parse_address(entry)
        if hop is None:
            break
        current = hop
        if not _is_trusted(hop, trusted_proxies):
            break
    return str(current)
