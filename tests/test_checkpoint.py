"""trust.checkpoint: C2SP signed notes, checkpoints and cosignatures, and the witness rule."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rcf.hub.merkle_store import MerkleStore
from rcf.trust import checkpoint as cp
from rcf.trust import merkle
from rcf.trust.errors import ConfigError, VerificationError
from rcf.trust.keys import SigningKey, verify_signature

# Published values (no C2SP file of test vectors exists; these are the examples
# in the specs and in the reference implementations' tests):
# golang.org/x/mod/sumdb/note, package documentation and note_test.go.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
    "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
# c2sp.org/signed-note, "Verifier keys" example.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfX"
    "ppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
# c2sp.org/tlog-cosignature, the example checkpoint with a cosignature; the spec's
# example signed message for it starts "cosignature/v1\ntime 1679315147\n".
SPEC_COSIGNED = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN"
    "7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dl"
    "rDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)
# transparency-dev/formats note/note_cosigv1_test.go: a native type-0x04 vkey, and
# a cosignature whose timestamp is 1727964367.
FORMATS_COSIG_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
FORMATS_COSIG_SIG = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFi"
    "EBYJXORmnFBOBA=="
)

HUB = "rcf-hub.example/audit-log"
ROOT = bytes(range(32))


def _hub_key() -> SigningKey:
    return SigningKey.from_seed(b"h" * 32)


def _witnesses(n: int) -> dict[str, SigningKey]:
    return {f"rcf.example/witness/{i}": SigningKey.from_seed(bytes([i]) * 32) for i in range(n)}


def _signed(size: int = 7, root: bytes = ROOT, origin: str = HUB) -> str:
    return cp.sign_checkpoint(cp.Checkpoint(origin, size, root), key=_hub_key())


def _flip_in_signature(note: str, line: int = 0) -> str:
    text, _, sigs = note.rpartition("\n\n")
    lines = sigs.split("\n")
    name, b64 = lines[line].rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 0x01
    lines[line] = f"{name} {base64.b64encode(bytes(raw)).decode()}"
    return text + "\n\n" + "\n".join(lines)


# -- published vectors ----------------------------------------------------------


def test_go_sumdb_note_vector_signs_byte_for_byte() -> None:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert seed[0] == cp.SIG_ED25519
    key = SigningKey.from_seed(seed[1:])
    vkey = cp.parse_verifier_key(GO_VKEY)
    assert vkey.public_key == key.public_key
    assert vkey.key_id.hex() == "c74f20a3"
    assert vkey.encode() == GO_VKEY
    assert cp.sign_note(GO_TEXT, name="PeterNeumann", key=key).format() == GO_NOTE
    cp.verify_note(cp.parse_note(GO_NOTE), name="PeterNeumann", public_key=vkey.public_key)


def test_signed_note_spec_example_verifies_and_tampering_fails() -> None:
    vkey = cp.parse_verifier_key(SPEC_VKEY)
    assert (vkey.name, vkey.key_id.hex(), vkey.sig_type) == ("example.com/foo", "530d903a", 1)
    note = cp.parse_note(SPEC_NOTE.encode())
    assert note.text == "This is an example message.\n"
    cp.verify_note(note, name=vkey.name, public_key=vkey.public_key)
    with pytest.raises(VerificationError):
        cp.verify_note(
            cp.parse_note(_flip_in_signature(SPEC_NOTE)), name=vkey.name, public_key=vkey.public_key
        )
    with pytest.raises(VerificationError):
        cp.verify_note(
            cp.parse_note(SPEC_NOTE.replace("example message", "example massage")),
            name=vkey.name,
            public_key=vkey.public_key,
        )


def test_cosignature_spec_examples_parse() -> None:
    note = cp.parse_note(SPEC_COSIGNED)
    checkpoint = cp.parse_checkpoint_body(note.text)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    assert checkpoint.body() == note.text
    witness = note.signatures[1]
    assert witness.name == "witness.example.com/w1"
    assert cp.cosignature_timestamp(witness) == 1679315147
    raw = base64.b64decode(FORMATS_COSIG_SIG)
    assert cp.cosignature_timestamp(cp.NoteSignature("w", raw[:4], raw[4:])) == 1727964367
    vkey = cp.parse_verifier_key(FORMATS_COSIG_VKEY)
    assert vkey.sig_type == cp.SIG_COSIGNATURE_V1
    assert vkey.key_id.hex() == "da77ade7"  # SHA-256(name || 0x0A || 0x04 || key)[:4]
    with pytest.raises(ConfigError):
        cp.parse_verifier_key(FORMATS_COSIG_VKEY.replace("da77ade7", "da77ade8"))


# -- checkpoints ----------------------------------------------------------------


def test_checkpoint_round_trip() -> None:
    key = _hub_key()
    checkpoint = cp.Checkpoint(HUB, 12345, ROOT, extensions=("ext line",))
    note = cp.sign_checkpoint(checkpoint, key=key)
    assert note.startswith(f"{HUB}\n12345\n{base64.b64encode(ROOT).decode()}\next line\n\n\u2014 ")
    assert cp.open_checkpoint(note, HUB, key.public_key) == checkpoint
    assert cp.open_checkpoint(note.encode(), HUB, key.public_key) == checkpoint
    empty = cp.Checkpoint(HUB, 0, merkle.EMPTY_ROOT)
    assert cp.open_checkpoint(cp.sign_checkpoint(empty, key=key), HUB, key.public_key) == empty


def test_forged_signature_is_refused() -> None:
    note = _signed()
    with pytest.raises(VerificationError) as info:
        cp.open_checkpoint(_flip_in_signature(note), HUB, _hub_key().public_key)
    assert info.value.reason == "bad_signature"
    forged = note.replace("\n7\n", "\n8\n")  # the hub never signed size 8
    with pytest.raises(VerificationError):
        cp.open_checkpoint(forged, HUB, _hub_key().public_key)


def test_wrong_key_and_wrong_origin_are_refused() -> None:
    mallory = SigningKey.from_seed(b"m" * 32)
    by_mallory = cp.sign_checkpoint(cp.Checkpoint(HUB, 7, ROOT), key=mallory)
    with pytest.raises(VerificationError) as info:
        cp.open_checkpoint(by_mallory, HUB, _hub_key().public_key)
    assert info.value.reason == "unsigned"
    other_log = cp.sign_checkpoint(
        cp.Checkpoint("rcf-hub.example/other-log", 7, ROOT), key=_hub_key(), name=HUB
    )
    with pytest.raises(VerificationError) as info:
        cp.open_checkpoint(other_log, HUB, _hub_key().public_key)
    assert info.value.reason == "wrong_origin"


def test_unknown_signatures_are_ignored() -> None:
    note = _signed()
    extra = cp.sign_note(
        cp.parse_note(note).text, name="someone.example/else", key=SigningKey.generate()
    )
    both = cp.merge_signatures(note, extra.format())
    assert len(cp.parse_note(both).signatures) == 2
    assert cp.open_checkpoint(both, HUB, _hub_key().public_key).size == 7


GOOD = _signed()
GOOD_TEXT, _, GOOD_SIGS = GOOD.partition("\n\n")
SIG_LINE = GOOD_SIGS.rstrip("\n")
ROOT_B64 = base64.b64encode(ROOT).decode()
BAD_NOTES: dict[str, str | bytes] = {
    "no final newline": GOOD.rstrip("\n"),
    "no blank line": GOOD.replace("\n\n", "\n"),
    "no signature lines": GOOD_TEXT + "\n\n",
    "hyphen instead of em dash": GOOD.replace("\u2014", "-"),
    "space in key name": GOOD.replace(f"\u2014 {HUB}", f"\u2014 {HUB} x"),
    "plus in key name": GOOD.replace(f"\u2014 {HUB}", f"\u2014 {HUB}+x"),
    "bad base64": GOOD.replace(SIG_LINE, SIG_LINE[:-3] + "!!="),
    "non-canonical base64": GOOD.replace(SIG_LINE, SIG_LINE[:-2] + "B="),
    "signature too short": f"{GOOD_TEXT}\n\n\u2014 {HUB} AAAA\n",
    "control character": GOOD.replace("\n7\n", "\n7\r\n"),
    "invalid UTF-8": GOOD.encode().replace(b"\n7\n", b"\n7\xff\n"),
}
# Checkpoint texts the hub's key really signed: only the body is wrong.
BAD_BODIES: dict[str, str] = {
    "size with a leading zero": GOOD_TEXT.replace("\n7\n", "\n07\n"),
    "negative size": GOOD_TEXT.replace("\n7\n", "\n-7\n"),
    "size too large": GOOD_TEXT.replace("\n7\n", "\n" + str(2**64) + "\n"),
    "root of 31 bytes": GOOD_TEXT.replace(ROOT_B64, base64.b64encode(ROOT[:31]).decode()),
    "root in non-canonical base64": GOOD_TEXT.replace(ROOT_B64, ROOT_B64[:-2] + "9="),
    "missing root line": GOOD_TEXT.replace(ROOT_B64, ""),
    "empty extension line": GOOD_TEXT + "\n\nx",
    "too many extension lines": GOOD_TEXT + "\nx" * 9,
    "origin with a space": GOOD_TEXT.replace(HUB, "rcf hub"),
    "origin with non-ASCII": GOOD_TEXT.replace(HUB, "rcf-hüb.example"),
}


@pytest.mark.parametrize("note", BAD_NOTES.values(), ids=BAD_NOTES.keys())
def test_malformed_notes_are_refused(note: str | bytes) -> None:
    with pytest.raises(VerificationError) as info:
        cp.open_checkpoint(note, HUB, _hub_key().public_key)
    assert info.value.reason == "malformed_note"


@pytest.mark.parametrize("text", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_malformed_checkpoints_are_refused_even_when_signed(text: str) -> None:
    note = cp.Note(text + "\n", ()).with_signature(
        cp.sign_note(text + "\n", name=HUB, key=_hub_key()).signatures[0]
    )
    cp.verify_note(cp.parse_note(note.format()), name=HUB, public_key=_hub_key().public_key)
    with pytest.raises(VerificationError) as info:
        cp.open_checkpoint(note.format(), HUB, _hub_key().public_key)
    assert info.value.reason == "malformed_checkpoint"


def test_oversize_notes_are_refused_before_any_signature_check() -> None:
    huge = GOOD_TEXT + "\n\n" + f"{SIG_LINE}\n" * 1000
    with pytest.raises(VerificationError, match="larger than"):
        cp.parse_note(huge)
    with pytest.raises(VerificationError, match="larger than"):
        cp.parse_note(huge.encode())
    many = GOOD_TEXT + "\n\n" + f"{SIG_LINE}\n" * (cp.MAX_SIGNATURES + 1)
    assert len(many.encode()) < cp.MAX_NOTE_BYTES
    with pytest.raises(VerificationError, match="more than"):
        cp.parse_note(many)
    at_limit = GOOD_TEXT + "\n\n" + f"{SIG_LINE}\n" * cp.MAX_SIGNATURES
    assert cp.open_checkpoint(at_limit, HUB, _hub_key().public_key).size == 7
    long_text = cp.sign_note(GOOD_TEXT + "\n" + "x" * 5000 + "\n", name=HUB, key=_hub_key())
    with pytest.raises(VerificationError, match="too long"):
        cp.open_checkpoint(long_text.format(), HUB, _hub_key().public_key)


def test_bad_names_and_fields_are_refused_when_signing() -> None:
    with pytest.raises(ConfigError):
        cp.sign_note("x\n", name="has space", key=_hub_key())
    with pytest.raises(VerificationError):
        cp.Checkpoint("bad origin", 1, ROOT)
    with pytest.raises(VerificationError):
        cp.Checkpoint(HUB, -1, ROOT)
    with pytest.raises(VerificationError):
        cp.Checkpoint(HUB, 1, ROOT[:16])


# -- cosignatures ---------------------------------------------------------------


def test_cosignature_round_trip_and_exact_format() -> None:
    [(name, wkey)] = _witnesses(1).items()
    note = _signed()
    cosigned = cp.cosign(note, name=name, key=wkey, timestamp=1_700_000_000)
    parsed = cp.parse_note(cosigned)
    assert parsed.text == cp.parse_note(note).text
    sig = parsed.signatures[-1]
    assert sig.key_id == cp.key_id(name, wkey.public_key, 0x04)
    assert sig.key_id != cp.key_id(name, wkey.public_key, 0x01)
    assert sig.signature[:8] == (1_700_000_000).to_bytes(8, "big")
    verify_signature(
        public_key=wkey.public_key,
        message=b"cosignature/v1\ntime 1700000000\n" + parsed.text.encode(),
        signature=sig.signature[8:],
    )
    assert cp.verify_cosignatures(cosigned, {name: wkey.public_key}, 1) == {name: 1_700_000_000}
    # The hub's signature still verifies: cosigning only adds a line.
    assert cp.open_checkpoint(cosigned, HUB, _hub_key().public_key).size == 7
    # A cosignature is not a plain note signature by the same key, and vice versa.
    with pytest.raises(VerificationError):
        cp.verify_note(parsed, name=name, public_key=wkey.public_key)
    plain = cp.merge_signatures(note, cp.sign_note(parsed.text, name=name, key=wkey).format())
    with pytest.raises(VerificationError, match="0 valid"):
        cp.verify_cosignatures(plain, {name: wkey.public_key}, 1)


def test_quorum_of_witnesses() -> None:
    witnesses = _witnesses(3)
    public = {n: k.public_key for n, k in witnesses.items()}
    note = _signed()
    names = list(witnesses)
    one = cp.cosign(note, name=names[0], key=witnesses[names[0]], timestamp=100)
    with pytest.raises(VerificationError) as info:
        cp.verify_cosignatures(one, public, 2)
    assert info.value.reason == "no_quorum"
    # The same witness twice is still one witness.
    again = cp.merge_signatures(one, cp.cosign(note, name=names[0], key=witnesses[names[0]]))
    with pytest.raises(VerificationError, match="1 valid"):
        cp.verify_cosignatures(again, public, 2)
    two = cp.merge_signatures(one, cp.cosign(note, name=names[1], key=witnesses[names[1]]))
    assert set(cp.verify_cosignatures(two, public, 2)) == set(names[:2])
    final = cp.open_final_checkpoint(
        two, hub_name=HUB, hub_public_key=_hub_key().public_key, witnesses=public, quorum=2
    )
    assert final.size == 7
    with pytest.raises(VerificationError):
        cp.open_final_checkpoint(
            two, hub_name=HUB, hub_public_key=_hub_key().public_key, witnesses=public, quorum=3
        )
    # An outsider's cosignature does not count toward the quorum.
    outsider = cp.cosign(note, name="outsider.example/w", key=SigningKey.generate())
    with pytest.raises(VerificationError, match="1 valid"):
        cp.verify_cosignatures(cp.merge_signatures(one, outsider), public, 2)
    # A cosignature dated after not_after is not counted.
    with pytest.raises(VerificationError, match="1 valid"):
        cp.verify_cosignatures(two, public, 2, not_after=200)
    with pytest.raises(ConfigError):
        cp.verify_cosignatures(two, public, 0)
    with pytest.raises(ConfigError):
        cp.verify_cosignatures(two, public, 4)


def test_a_bad_cosignature_by_a_known_witness_rejects_the_note() -> None:
    witnesses = _witnesses(2)
    public = {n: k.public_key for n, k in witnesses.items()}
    note = _signed()
    a, b = list(witnesses)
    both = cp.cosign(cp.cosign(note, name=a, key=witnesses[a]), name=b, key=witnesses[b])
    with pytest.raises(VerificationError) as info:
        cp.verify_cosignatures(_flip_in_signature(both, line=2), public, 1)
    assert info.value.reason == "bad_cosignature"
    # Cosignatures cover the whole checkpoint text: another size breaks them.
    with pytest.raises(VerificationError):
        cp.verify_cosignatures(both.replace("\n7\n", "\n8\n"), public, 1)


def test_merging_different_checkpoints_is_refused() -> None:
    with pytest.raises(VerificationError) as info:
        cp.merge_signatures(_signed(7), _signed(8))
    assert info.value.reason == "different_checkpoints"


# -- the witness rule -----------------------------------------------------------


class Log:
    """The hub side for witness tests: a real store, signed checkpoints, proofs."""

    def __init__(self, path: Path) -> None:
        self.store = MerkleStore(path)

    def checkpoint(self) -> tuple[str, cp.Checkpoint]:
        return self.checkpoint_at(self.store.size())

    def checkpoint_at(self, size: int) -> tuple[str, cp.Checkpoint]:
        c = cp.Checkpoint(HUB, size, self.store.root(size))
        return cp.sign_checkpoint(c, key=_hub_key()), c


@pytest.fixture
def new_log(tmp_path: Path) -> Iterator[Callable[[str], Log]]:
    logs: list[Log] = []

    def make(name: str) -> Log:
        logs.append(Log(tmp_path / name))
        return logs[-1]

    yield make
    for log in logs:
        log.store.close()


def _review(state: cp.WitnessState, note: str, proof: list[bytes]) -> cp.WitnessDecision:
    return state.review_note(note, proof, hub_name=HUB, hub_public_key=_hub_key().public_key)


def test_witness_cosigns_a_growing_log_and_refuses_a_smaller_one(
    new_log: Callable[[str], Log],
) -> None:
    log = new_log("log.db")
    state = cp.WitnessState(origin=HUB)
    note0, _ = log.checkpoint()
    decision = _review(state, note0, [])
    assert (decision.cosign, decision.reason) == (True, "first_checkpoint")
    state = decision.state
    sizes = []
    for batch in ([b"a"], [b"b", b"c"], [], [b"d"] * 10):
        size1 = log.store.size()
        log.store.append(batch)
        note, c = log.checkpoint()
        proof = log.store.consistency_proof(size1, c.size) if size1 else []
        decision = _review(state, note, proof)
        assert decision.cosign, decision.message
        assert decision.reason in {"consistent", "same_checkpoint"}
        state = decision.state
        assert state.last == c
        sizes.append(c.size)
    assert sizes == [1, 3, 3, 13]
    old_note, _ = log.checkpoint_at(3)
    refused = _review(state, old_note, [])
    assert (refused.cosign, refused.reason) == (False, "smaller_size")
    assert refused.state == state
    assert refused.evidence is None


def test_witness_refuses_a_forked_log_and_keeps_evidence(new_log: Callable[[str], Log]) -> None:
    honest, fork = new_log("a.db"), new_log("b.db")
    honest.store.append([b"r0", b"r1", b"r2"])
    fork.store.append([b"r0", b"rX", b"r2"])  # one entry rewritten
    state = _review(cp.WitnessState(origin=HUB), honest.checkpoint()[0], []).state
    honest_note = state.last_note
    fork.store.append([b"r3", b"r4"])
    fork_note, _ = fork.checkpoint()
    decision = _review(state, fork_note, fork.store.consistency_proof(3, 5))
    assert (decision.cosign, decision.reason) == (False, "inconsistent")
    assert decision.state == state
    assert decision.evidence is not None
    assert decision.evidence.earlier_note == honest_note
    assert decision.evidence.later_note == fork_note
    # Both notes carry the hub's valid signature: that is the evidence.
    for n in (decision.evidence.earlier_note, decision.evidence.later_note):
        cp.open_checkpoint(n, HUB, _hub_key().public_key)
    # The same size with another root is a fork too.
    same_size = cp.Checkpoint(HUB, 3, fork.store.root(3))
    decision = state.review(same_size, [], note=cp.sign_checkpoint(same_size, key=_hub_key()))
    assert (decision.cosign, decision.reason) == (False, "inconsistent")
    assert decision.evidence is not None


def test_witness_refuses_forged_and_foreign_checkpoints(new_log: Callable[[str], Log]) -> None:
    log = new_log("log.db")
    log.store.append([b"a"])
    state = _review(cp.WitnessState(origin=HUB), log.checkpoint()[0], []).state
    log.store.append([b"b"])
    note, _ = log.checkpoint()
    with pytest.raises(VerificationError):
        _review(state, _flip_in_signature(note), log.store.consistency_proof(1, 2))
    other = cp.Checkpoint("rcf-hub.example/other", 2, log.store.root())
    decision = state.review(other, log.store.consistency_proof(1, 2))
    assert (decision.cosign, decision.reason) == (False, "wrong_origin")
    # A consistent checkpoint with a garbage proof is not cosigned either.
    decision = _review(state, note, [b"\x00" * 32])
    assert (decision.cosign, decision.reason) == (False, "inconsistent")
