"""The data dictionary: defaults, signing, the minor-version rule, hub → node publication."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pycountry
import pytest

from rcf.node.data.dictionary import load_dictionary
from rcf.trust.dictionary import (
    BORDER_CROSSING_POINTS,
    DataDictionary,
    DictionaryError,
    Dimension,
    check_successor,
    default_code_list,
    default_dictionary,
    nationality_codes,
    sign_dictionary,
    verify_dictionary,
)
from rcf.trust.dsse import Envelope
from rcf.trust.keys import SigningKey
from tests.network import Network


def _with_codes(
    d: DataDictionary, version: str, dataset: str, dim: str, codes: tuple[str, ...]
) -> DataDictionary:
    ds = d.datasets[dataset]
    dims = tuple(dataclasses.replace(x, codes=codes) if x.name == dim else x for x in ds.dimensions)
    return DataDictionary(
        version=version,
        datasets={**d.datasets, dataset: dataclasses.replace(ds, dimensions=dims)},
        purposes=d.purposes,
    )


def test_default_datasets_and_interface() -> None:
    d = default_dictionary()
    assert d.version == "1.0"
    assert set(d.datasets) == {
        "irregular_movements",
        "trafficking_victims",
        "document_fraud_detections",
        "asylum_applications",
        "persons",
        "documents",
    }
    im = d.dataset("irregular_movements")
    assert im is not None and im.kind == "aggregate" and im.measures == ("persons",)
    assert [x.name for x in im.dimensions] == [
        "event_date", "reporting_state", "location", "route", "direction",
        "nationality", "sex", "age_band", "outcome",
    ]  # fmt: skip
    route = im.dimension("route")
    assert route == Dimension("route", "code", ("sea", "land", "air"))
    assert im.dimension("nope") is None and d.dataset("nope") is None
    assert d.datasets["persons"].kind == "identity" and d.datasets["documents"].kind == "identity"
    fraud = d.datasets["document_fraud_detections"].dimension("fraud_type")
    assert fraud is not None and "fraudulently_obtained_genuine" in fraud.codes


FROZEN_DEFAULT = Path(__file__).parent / "vectors" / "default_dictionary_1.0.json"


def test_default_dictionary_file_gives_the_published_dictionary() -> None:
    """default_dictionary.toml (package data) must give, field by field and byte for byte,
    the dictionary the code built before it moved there: hubs sign and publish it, so its
    serialisation may only change on purpose (then regenerate the frozen file). The ISO
    code lists come from pycountry: an upgrade that changes them fails here, on purpose."""
    frozen = DataDictionary.from_json(FROZEN_DEFAULT.read_text())
    d = default_dictionary()
    assert (d.version, dict(d.purposes)) == (frozen.version, dict(frozen.purposes))
    assert list(d.datasets) == list(frozen.datasets)
    for name, ds in frozen.datasets.items():
        assert d.datasets[name].dimensions == ds.dimensions, name
        assert d.datasets[name] == ds, name
    assert d.to_proto().SerializeToString(
        deterministic=True
    ) == frozen.to_proto().SerializeToString(deterministic=True)
    assert d.to_json() + "\n" == FROZEN_DEFAULT.read_text()


def test_default_code_lists_expand_includes() -> None:
    bcp = default_code_list("border_crossing_points")
    assert bcp == BORDER_CROSSING_POINTS and bcp != tuple(sorted(bcp))
    assert default_code_list("location")[-len(bcp) :] == tuple(sorted(bcp))
    assert default_code_list("issuing_state") == nationality_codes()[:-1]
    assert nationality_codes()[-4:] == ("XXA", "XXB", "XXC", "XXX")
    with pytest.raises(DictionaryError, match="neither defined nor computed"):
        default_code_list("no_such_list")


def test_nationality_is_the_complete_iso_list() -> None:
    nat = default_dictionary().datasets["irregular_movements"].dimension("nationality")
    assert nat is not None
    iso = {c.alpha_3 for c in pycountry.countries}
    assert iso <= set(nat.codes)
    assert set(nat.codes) - iso == {"XXA", "XXB", "XXC", "XXX"}


def test_sign_verify_and_tamper() -> None:
    key = SigningKey.generate()
    envelope = sign_dictionary(default_dictionary(), key)
    assert verify_dictionary(envelope, hub_public_key=key.public_key) == default_dictionary()
    with pytest.raises(DictionaryError, match="not the hub key"):
        verify_dictionary(envelope, hub_public_key=SigningKey.generate().public_key)
    tampered = Envelope(
        payload=envelope.payload.replace(b"rescued", b"rescuex"),
        payload_type=envelope.payload_type,
        signatures=envelope.signatures,
    )
    with pytest.raises(DictionaryError, match="does not verify"):
        verify_dictionary(tampered, hub_public_key=key.public_key)


def test_json_round_trip() -> None:
    d = default_dictionary()
    assert DataDictionary.from_json(d.to_json()) == d
    with pytest.raises(DictionaryError, match="malformed"):
        DataDictionary.from_json('{"version": "1.1"}')


def test_minor_versions_only_add_codes() -> None:
    v1 = default_dictionary()
    route = ("sea", "land", "air", "river")
    check_successor(v1, _with_codes(v1, "1.1", "irregular_movements", "route", route))
    with pytest.raises(DictionaryError, match="removes code 'air'"):
        check_successor(v1, _with_codes(v1, "1.1", "irregular_movements", "route", ("sea", "land")))
    with pytest.raises(DictionaryError, match="does not follow"):
        check_successor(v1, _with_codes(v1, "1.0", "irregular_movements", "route", route))
    ds = v1.datasets["documents"]
    changed = dataclasses.replace(
        ds,
        dimensions=tuple(
            dataclasses.replace(x, kind="text", codes=()) if x.name == "status" else x
            for x in ds.dimensions
        ),
    )
    v11 = DataDictionary(
        version="1.1", datasets={**v1.datasets, "documents": changed}, purposes=v1.purposes
    )
    with pytest.raises(DictionaryError, match="only codes may be added"):
        check_successor(v1, v11)
    # A new major may change anything.
    check_successor(v1, dataclasses.replace(v11, version="2.0"))
    fewer = DataDictionary(version="1.1", datasets={"documents": ds}, purposes=v1.purposes)
    with pytest.raises(DictionaryError, match="removes purpose"):
        check_successor(v1, dataclasses.replace(v11, purposes={}))
    with pytest.raises(DictionaryError, match="adds or removes datasets"):
        check_successor(v1, fewer)


def test_hub_publishes_and_node_follows(tmp_path: Path) -> None:
    net = Network(tmp_path)
    try:
        net.start_hub()
        node = net.add_node("TH")
        node.refresh_directory()
        layout = net.layout("TH")
        assert node.directory.peek().dictionary_version == "1.0"
        assert layout.dictionary_cache.exists()
        assert load_dictionary(layout) == default_dictionary()
        v1 = default_dictionary()
        route = ("sea", "land", "air", "river")
        net.registry.publish_dictionary(
            _with_codes(v1, "1.1", "irregular_movements", "route", route)
        )
        with pytest.raises(DictionaryError, match="removes code"):
            net.registry.publish_dictionary(
                _with_codes(v1, "1.2", "irregular_movements", "route", ("sea",))
            )
        node.refresh_directory()
        assert node.directory.peek().dictionary_version == "1.1"
        got = load_dictionary(layout).datasets["irregular_movements"].dimension("route")
        assert got is not None and got.codes == route
        # A damaged cache is refused, never silently replaced by the defaults.
        layout.dictionary_cache.write_bytes(layout.dictionary_cache.read_bytes()[:-5] + b"xxxxx")
        with pytest.raises(DictionaryError):
            load_dictionary(layout)
    finally:
        net.close()
