"""The outbound address guard (backend/integrations/netguard.py) on real sockets: which
addresses are refused, that the refusal happens at the connect (whatever the URL said when it
was registered), and that with the setting a local receiver is reached."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from backend.integrations.netguard import RefusedAddress, forbidden, guarded_client, guarded_post
from tests.support.fake_outside import FakeOutside


@pytest.fixture(scope="module")
def receiver() -> Iterator[FakeOutside]:
    fake = FakeOutside()
    yield fake
    fake.stop()


@pytest.mark.parametrize(("address", "refused"), [
    ("8.8.8.8", False), ("1.1.1.1", False), ("2606:4700:4700::1111", False),
    ("127.0.0.1", True), ("10.0.0.1", True), ("172.16.5.4", True), ("192.168.1.1", True),
    ("169.254.169.254", True), ("100.64.0.1", True), ("0.0.0.0", True), ("224.0.0.1", True),
    ("255.255.255.255", True), ("::1", True), ("fe80::1", True), ("fc00::1", True),
    ("::ffff:127.0.0.1", True), ("::ffff:8.8.8.8", False), ("ff02::1", True), ("::", True),
    ("192.0.2.1", True), ("2001:db8::1", True),
])
def test_which_addresses_are_refused(address: str, refused: bool) -> None:
    assert forbidden(ipaddress.ip_address(address)) is refused


async def test_the_guarded_client_refuses_at_the_connect(receiver: FakeOutside) -> None:
    url = receiver.webhook("s" * 32)
    client = guarded_client(allow_private=False, timeout=5)
    try:
        for target in (url, url.replace("127.0.0.1", "localhost")):
            with pytest.raises(RefusedAddress):
                await guarded_post(client, target, content=b"{}", headers={})
    finally:
        await client.aclose()
    assert receiver.to(url) == []  # nothing reached it
    allowed = guarded_client(allow_private=True, timeout=5)
    try:
        response = await guarded_post(allowed, url.replace("127.0.0.1", "localhost"),
                                      content=b"{}", headers={})
    finally:
        await allowed.aclose()
    assert response.status_code == 400  # reached: the receiver refuses the missing signature
    assert [r.error for r in receiver.to(url)] == ["bad signature header ''"]
    assert receiver.to(url)[0].headers["host"].startswith("localhost:")
