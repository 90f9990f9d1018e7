"""Node endpoints as the directory publishes them: ``host:port`` a peer can dial.

A member publishes its own endpoint, so the hub checks it before every
member's node starts dialling it: a DNS name or an IP literal (IPv6 in
brackets) and a port from 1 to 65535. Addresses no peer can reach or that
reach more than one host are refused: unspecified (``0.0.0.0``, ``::``),
link-local (``169.254.0.0/16``, ``fe80::/10``) and multicast.
"""

from __future__ import annotations

import ipaddress
import re

from rcf.trust.errors import RegistryError

MAX_ENDPOINT = 261  # a 253-character name, ':' and five digits, with room for brackets
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _refuse(why: str) -> RegistryError:
    return RegistryError(
        f"The endpoint is not usable: {why}.", reason="bad_endpoint", status="INVALID_ARGUMENT"
    )


def check_endpoint(text: str) -> str:
    """text if it is a host:port peers can dial; RegistryError (bad_endpoint) otherwise."""
    if not text or len(text) > MAX_ENDPOINT or not text.isascii():
        raise _refuse(f"it must be host:port, at most {MAX_ENDPOINT} ASCII characters")
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise _refuse("an IPv6 address must be written [address]:port")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise _refuse("it must be host:port")
    if not port.isdigit() or not 1 <= int(port) <= 65535 or port != str(int(port)):
        raise _refuse("the port must be a number from 1 to 65535")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None:
        if text.startswith("[") or ":" in host:
            raise _refuse("the host is not an IP address")
        labels = host.rstrip(".").split(".")
        if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
            raise _refuse("the host is not a valid DNS name or IP address")
        if all(label.isdigit() for label in labels):
            raise _refuse("the host is not a valid IPv4 address")
        return text
    if address.version == 6 and not text.startswith("["):
        raise _refuse("an IPv6 address must be written [address]:port")
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    for a in (address, mapped):
        if a is None:
            continue
        if a.is_unspecified:
            raise _refuse("an unspecified address (0.0.0.0, ::) reaches no particular host")
        if a.is_link_local:
            raise _refuse("a link-local address is not reachable from other networks")
        if a.is_multicast:
            raise _refuse("a multicast address is not one node")
    return text
