from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.network import Network


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    """A hub plus AU, TH and NZ nodes (AU and TH in the steering group), all running."""
    network = Network(tmp_path)
    try:
        network.start_hub()
        network.add_node("AU", groups=("steering-group",))
        network.add_node("TH", groups=("steering-group",))
        network.add_node("NZ")
        network.refresh_all()
        yield network
    finally:
        network.close()
