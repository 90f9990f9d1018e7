"""hub/: the registry's rules, on a real SQLite file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from rcf.hub.registry import Registry
from rcf.hub.setup import init_hub, open_registry
from rcf.trust import pki
from rcf.trust.directory import MemberStatus, Ncp, verify_directory
from rcf.trust.errors import ConfigError, RegistryError
from rcf.trust.keys import SigningKey


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return open_registry(init_hub(tmp_path / "hub", network="t"))


def _csr(member_id: str) -> bytes:
    return pki.make_csr(pki.new_private_key_pem(), member_id)


def test_every_change_publishes_a_new_signed_serial(registry: Registry, tmp_path: Path) -> None:
    first = registry.current_serial()
    registry.add_member("TH", name="Thailand", groups=("steering-group",))
    registry.add_member("RSO", name="RSO", roles=("coordinator",))
    registry.set_status("TH", MemberStatus.SUSPENDED)
    registry.add_ncp("TH", Ncp("", "Police", "desk", "AHTD"))
    assert registry.current_serial() == first + 4
    hub_key = SigningKey.load(tmp_path / "hub" / "hub-signing.key")
    directory = verify_directory(
        registry.current_directory(), hub_public_key=hub_key.public_key, now_ms=None
    )
    th = directory.member("TH")
    assert th is not None and th.status is MemberStatus.SUSPENDED
    assert th.groups == ("steering-group",) and len(th.ncps) == 1
    rso = directory.member("RSO")
    assert rso is not None and rso.roles == ("coordinator",)


def test_member_rules(registry: Registry) -> None:
    registry.add_member("TH", name="Thailand")
    with pytest.raises(RegistryError, match="already exists"):
        registry.add_member("TH", name="again")
    with pytest.raises(ConfigError):
        registry.add_member("th", name="lower case")
    with pytest.raises(RegistryError, match="not a valid group"):
        registry.add_member("AU", name="x", groups=("Steering Group",))
    with pytest.raises(RegistryError, match="No member XX"):
        registry.set_status("XX", MemberStatus.SUSPENDED)
    registry.set_status("TH", MemberStatus.REVOKED)
    with pytest.raises(RegistryError, match="cannot be undone"):
        registry.set_status("TH", MemberStatus.ACTIVE)
    with pytest.raises(RegistryError, match="revoked"):
        registry.enroll_offline(
            member_id="TH", csr_pem=_csr("TH"), signing_public_key=SigningKey.generate().public_key
        )


def test_join_tokens_are_one_time_bound_and_expiring(registry: Registry) -> None:
    registry.add_member("TH", name="Thailand")
    registry.add_member("AU", name="Australia")
    key = SigningKey.generate().public_key
    secret = registry.create_join_token("TH")
    with pytest.raises(RegistryError, match="for TH, not AU") as info:
        registry.enroll_with_token(
            secret=secret, member_id="AU", csr_pem=_csr("AU"), signing_public_key=key
        )
    assert info.value.reason == "bad_token"
    # A failed attempt (bad CSR) does not use the token up.
    with pytest.raises(Exception, match="CSR asks for"):
        registry.enroll_with_token(
            secret=secret, member_id="TH", csr_pem=_csr("AU"), signing_public_key=key
        )
    result = registry.enroll_with_token(
        secret=secret, member_id="TH", csr_pem=_csr("TH"), signing_public_key=key
    )
    assert pki.common_name(result.certificate_pem) == "TH"
    with pytest.raises(RegistryError, match="already been used"):
        registry.enroll_with_token(
            secret=secret, member_id="TH", csr_pem=_csr("TH"), signing_public_key=key
        )
    expired = registry.create_join_token("TH", ttl_ms=1)
    time.sleep(0.01)
    with pytest.raises(RegistryError, match="expired"):
        registry.enroll_with_token(
            secret=expired, member_id="TH", csr_pem=_csr("TH"), signing_public_key=key
        )
    with pytest.raises(RegistryError, match="not known"):
        registry.enroll_with_token(
            secret="guess", member_id="TH", csr_pem=_csr("TH"), signing_public_key=key
        )


def test_key_rotation_keeps_old_keys_listed_and_closed(registry: Registry) -> None:
    registry.add_member("TH", name="Thailand")
    old, new = SigningKey.generate(), SigningKey.generate()
    registry.enroll_offline(member_id="TH", csr_pem=_csr("TH"), signing_public_key=old.public_key)
    first_cert = registry.node_fingerprint("TH")
    registry.enroll_offline(
        member_id="TH", csr_pem=_csr("TH"), signing_public_key=new.public_key, replace=True
    )
    th = registry.snapshot().member("TH")
    assert th is not None
    keys = {k.key_id: k for k in th.signing_keys}
    assert set(keys) == {old.key_id, new.key_id}
    assert keys[old.key_id].valid_until_ms != 0
    assert keys[new.key_id].valid_until_ms == 0
    assert keys[old.key_id].valid_at(keys[old.key_id].valid_from_ms)
    assert not keys[old.key_id].valid_at(keys[new.key_id].valid_from_ms)
    # The new certificate replaces the old one in the directory.
    assert registry.node_fingerprint("TH") != first_cert


def test_ncp_crud(registry: Registry) -> None:
    registry.add_member("TH", name="Thailand")
    ncp = registry.add_ncp("TH", Ncp("", "Police", "desk", "AHTD", languages=("th", "en")))
    assert ncp.ncp_id.startswith("TH-")
    registry.update_ncp(ncp.ncp_id, {"phone": "+66 2", "languages": ("th",)})
    [(member, got)] = registry.ncps("TH")
    assert member == "TH" and got.phone == "+66 2" and got.languages == ("th",)
    with pytest.raises(RegistryError, match="no field"):
        registry.update_ncp(ncp.ncp_id, {"salary": "x"})
    registry.remove_ncp(ncp.ncp_id)
    assert registry.ncps() == []
    with pytest.raises(RegistryError, match="No NCP"):
        registry.remove_ncp(ncp.ncp_id)
    with pytest.raises(RegistryError, match="No member"):
        registry.add_ncp("XX", Ncp("", "a", "b", "c"))


def test_stale_directory_is_renewed(registry: Registry) -> None:
    registry.add_member("TH", name="Thailand")
    serial = registry.current_serial()
    registry.current_directory(renew_after_ms=10**12)
    assert registry.current_serial() == serial
    registry.current_directory(renew_after_ms=0)
    assert registry.current_serial() == serial + 1


def test_failed_change_leaves_the_registry_as_it_was(registry: Registry, tmp_path: Path) -> None:
    registry.add_member("TH", name="Thailand")
    serial = registry.current_serial()
    with pytest.raises(RegistryError):
        registry.add_member("TH", name="dup")
    assert registry.current_serial() == serial
    conn = sqlite3.connect(tmp_path / "hub" / "registry.db")
    assert conn.execute("SELECT COUNT(*) FROM members").fetchone()[0] == 1


def test_hub_folder_is_never_overwritten(tmp_path: Path) -> None:
    init_hub(tmp_path / "hub", network="t")
    with pytest.raises(ConfigError, match="already holds a hub"):
        init_hub(tmp_path / "hub", network="t")
