"""Rollback protection survives a restart: an older directory.signed or
dictionary.signed put back in the node folder is refused at start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rcf.node.federation.server import NodeServer
from rcf.trust.dictionary import DictionaryError, default_dictionary
from rcf.trust.directory import MemberStatus
from rcf.trust.errors import DirectoryError
from tests.network import Network
from tests.test_dictionary import _with_codes


def test_an_older_directory_put_back_is_refused_at_start(net: Network, tmp_path: Path) -> None:
    th = net.nodes["TH"]
    layout = net.layout("TH")
    old = tmp_path / "old-directory.signed"
    shutil.copy(layout.directory_cache, old)
    old_serial = th.directory.peek().serial
    net.registry.set_status("NZ", MemberStatus.SUSPENDED)
    net.registry.set_status("AU", MemberStatus.SUSPENDED)
    th.refresh_directory()
    held = th.directory.peek().serial
    assert held >= old_serial + 2
    net.stop_node("TH")
    newer = tmp_path / "newer-directory.signed"
    shutil.copy(layout.directory_cache, newer)

    shutil.copy(old, layout.directory_cache)
    with pytest.raises(DirectoryError) as info:
        NodeServer(layout)
    assert info.value.reason == "directory_rollback"
    assert f"serial {old_serial}, but this node already accepted serial {held}" in str(info.value)

    # Putting the newer file back is the way out.
    shutil.copy(newer, layout.directory_cache)
    node = net.start_node("TH")
    assert node.directory.peek().serial >= held


def test_an_older_dictionary_put_back_is_refused_at_start(net: Network, tmp_path: Path) -> None:
    th = net.nodes["TH"]
    layout = net.layout("TH")
    assert th.directory.peek().dictionary_version == "1.0"
    old = tmp_path / "old-dictionary.signed"
    shutil.copy(layout.dictionary_cache, old)
    v1 = default_dictionary()
    route = (*v1.datasets["irregular_movements"].dimension("route").codes, "river")  # type: ignore[union-attr]
    net.registry.publish_dictionary(_with_codes(v1, "1.1", "irregular_movements", "route", route))
    th.refresh_directory()
    assert th.directory.peek().dictionary_version == "1.1"
    net.stop_node("TH")

    shutil.copy(old, layout.dictionary_cache)
    with pytest.raises(DictionaryError) as info:
        NodeServer(layout)
    assert info.value.reason == "dictionary_rollback"
    assert "version 1.0, but this node already accepted version 1.1" in str(info.value)

    # Deleting it is the way out: the node starts and fetches 1.1 again.
    layout.dictionary_cache.unlink()
    node = net.start_node("TH")
    assert node.directory.peek().dictionary_version == "1.1"
