"""Where a webhook may go: https to a public address, checked when the subscription is made and again at every send.

A URL that names a host is only as safe as what the host resolves to when we
connect. An attacker's DNS can answer with a public address when the
subscription is checked and with 127.0.0.1 or 169.254.169.254 (cloud
metadata) a second later (DNS rebinding). So ``check_target`` resolves the
host once, refuses the send if any address it got is not public, and the
sender connects to exactly the address that was checked, sending the host
name only as SNI and Host.

``allow_private`` (NOTIFY_ALLOW_PRIVATE_WEBHOOKS, development only) lets
http and loopback/private/link-local receivers through, for the dev sink.
"""

import ipaddress
import socket
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2000
DEFAULT_PORTS = {"https": 443, "http": 80}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list]


class UnsafeTarget(ValueError):
    """The URL may never receive webhooks as it stands (scheme, credentials, a non-public address)."""


class UnresolvableTarget(OSError):
    """The host did not resolve now; DNS may answer later."""


class Target(NamedTuple):
    host: str
    port: int
    resolved_ip: str


def validate_subscription_url(url: str, allow_private: bool) -> SplitResult:
    """The URL's parts if it may be a subscription's URL (no DNS: that happens at each send); UnsafeTarget otherwise."""
    if not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeTarget(f"a webhook URL has 1 to {MAX_URL_LENGTH} characters")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise UnsafeTarget("a webhook URL has no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when it is not a number in 0..65535
    except ValueError as error:
        raise UnsafeTarget(f"not a URL: {error}") from None
    allowed_schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed_schemes:
        raise UnsafeTarget(f"a webhook URL must use {' or '.join(allowed_schemes)}")
    if not parts.hostname:
        raise UnsafeTarget("a webhook URL names a host")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and in the subscription listing; receivers sign-check instead.
        raise UnsafeTarget("a webhook URL carries no user name or password")
    if port == 0:
        raise UnsafeTarget("a webhook URL's port is 1 to 65535")
    _refuse_literal_address(parts.hostname, allow_private)
    return parts


def check_target(url: str, allow_private: bool, resolver: Resolver = socket.getaddrinfo) -> Target:
    """The host, port and the one address to connect to for this send; UnsafeTarget or UnresolvableTarget otherwise."""
    parts = validate_subscription_url(url, allow_private)
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    addresses = resolve(parts.hostname, port, resolver)
    if not allow_private:
        unsafe = [str(address) for address in addresses if not is_public(address)]
        if unsafe:
            raise UnsafeTarget(f"{parts.hostname} resolves to non-public addresses {unsafe}")
    return Target(parts.hostname, port, str(addresses[0]))


def resolve(host: str, port: int, resolver: Resolver = socket.getaddrinfo) -> list[IPAddress]:
    """Every address the host resolves to now, in the resolver's order."""
    try:
        answers = resolver(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnresolvableTarget(f"{host} does not resolve: {error}") from None
    addresses = []
    for _family, _type, _proto, _canonical, sockaddr in answers:
        # An IPv6 sockaddr may carry a zone ("fe80::1%eth0"); the zone never makes an address public.
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnresolvableTarget(f"{host} resolves to no address")
    return addresses


def is_public(address: IPAddress) -> bool:
    """True for an address on the public internet: not loopback, private, link-local, multicast, reserved,
    unspecified or shared (carrier-grade NAT), looking through IPv4 addresses wrapped in IPv6."""
    address = _unwrapped(address)
    return address.is_global and not (
        address.is_loopback or address.is_private or address.is_link_local or address.is_multicast
        or address.is_reserved or address.is_unspecified
    )


def _unwrapped(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), 6to4 or NAT64 (64:ff9b::/96) IPv6 address: a
    connection to one of those reaches that IPv4 address, so that is the one to judge."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _refuse_literal_address(host: str, allow_private: bool) -> None:
    """A URL that names an address outright can be refused before any DNS."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    if not allow_private and not is_public(address):
        raise UnsafeTarget(f"{host} is not a public address")
