"""Where webhooks may go: https to public addresses only, checked again at each send against DNS rebinding."""

import ipaddress
import socket

import pytest

from services.notify.channels.targets import (
    MAX_URL_LENGTH, UnresolvableTarget, UnsafeTarget, check_target, is_public, validate_subscription_url,
)


def answers(*addresses: str):
    """A resolver answering with these addresses, counting its calls (a stand-in for an attacker's DNS)."""

    def resolver(host, port, type=0):
        resolver.calls += 1
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port) if ":" not in a else (a, port, 0, 0)) for a in addresses]

    resolver.calls = 0
    return resolver


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hook",
    "https://127.8.9.10/hook",
    "https://10.1.2.3/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.20/hook",
    "https://169.254.169.254/latest/meta-data",  # the cloud metadata service
    "https://100.64.0.1/hook",  # carrier-grade NAT
    "https://0.0.0.0/hook",
    "https://224.0.0.1/hook",
    "https://[::1]/hook",
    "https://[::]/hook",
    "https://[fe80::1]/hook",
    "https://[fc00::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "https://[::ffff:169.254.169.254]/hook",
    "https://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    "https://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
])
def test_non_public_addresses_are_refused_unless_allowed(url):
    with pytest.raises(UnsafeTarget):
        check_target(url, allow_private=False)
    with pytest.raises(UnsafeTarget):
        validate_subscription_url(url, allow_private=False)
    assert check_target(url, allow_private=True).resolved_ip


def test_a_host_name_that_resolves_to_loopback_is_refused():
    with pytest.raises(UnsafeTarget, match="localhost"):
        check_target("https://localhost:8443/hook", allow_private=False)
    # Without DNS nothing about a name is known yet: the subscription may be made, the send is checked.
    assert validate_subscription_url("https://localhost:8443/hook", allow_private=False).hostname == "localhost"


def test_an_address_written_as_a_number_is_judged_by_where_it_leads():
    with pytest.raises(UnsafeTarget):
        check_target("https://2130706433/hook", allow_private=False)  # 127.0.0.1 as one integer


def test_a_public_answer_passes_and_is_the_address_to_connect_to():
    resolver = answers("93.184.215.14")
    target = check_target("https://hooks.example.com/services/x", allow_private=False, resolver=resolver)
    assert target == ("hooks.example.com", 443, "93.184.215.14")
    assert resolver.calls == 1


def test_one_private_address_among_public_ones_is_enough_to_refuse():
    with pytest.raises(UnsafeTarget, match="10.0.0.7"):
        check_target("https://hooks.example.com/x", allow_private=False, resolver=answers("93.184.215.14", "10.0.0.7"))
    with pytest.raises(UnsafeTarget):
        check_target("https://hooks.example.com/x", allow_private=False,
                     resolver=answers("2606:2800:21f:cb07:6820:80da:af6b:8b2c", "::ffff:192.168.0.1"))


def test_a_name_that_does_not_resolve_is_a_temporary_matter():
    with pytest.raises(UnresolvableTarget):
        check_target("https://no-such-host.invalid/hook", allow_private=False)


@pytest.mark.parametrize("url, allow_private", [
    ("http://hooks.example.com/x", False),
    ("ftp://hooks.example.com/x", True),
    ("file:///etc/passwd", True),
    ("https://user:pass@hooks.example.com/x", True),
    ("https://hooks.example.com:0/x", True),
    ("https://hooks.example.com:99999/x", True),
    ("https:///x", True),
    ("https://hooks.example.com/x y", True),
    ("https://hooks.example.com/x\r\nHost: evil", True),
    ("https://hooks.example.com/" + "x" * MAX_URL_LENGTH, True),
    ("", True),
])
def test_malformed_or_unsafe_urls_are_refused(url, allow_private):
    with pytest.raises(UnsafeTarget):
        validate_subscription_url(url, allow_private)


def test_http_and_loopback_are_fine_when_allowed_for_development():
    assert check_target("http://127.0.0.1:9102/hook", allow_private=True) == ("127.0.0.1", 9102, "127.0.0.1")
    assert validate_subscription_url("https://hooks.slack.com/services/T0/B0/x", allow_private=False).port is None


def test_public_addresses_are_public():
    for text in ("93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
        assert is_public(ipaddress.ip_address(text)), text
