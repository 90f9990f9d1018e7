"""Signed tree heads of the hub's audit log, and the members' witness cosignatures.

Three C2SP formats, Ed25519 only:

- signed notes (https://c2sp.org/signed-note): text, a blank line, then lines
  ``— <key name> base64(key ID || signature)``; the key ID is
  SHA-256(name || 0x0A || type || public key)[:4] with type 0x01 for plain
  Ed25519 over the text;
- checkpoints (https://c2sp.org/tlog-checkpoint): the text is
  ``<origin>\\n<size>\\n<base64 root>\\n`` and optional extension lines;
- cosignatures (https://c2sp.org/tlog-cosignature, ``cosignature/v1``): type
  0x04; the signature is timestamp (u64 big-endian) || Ed25519 over
  ``cosignature/v1\\ntime <timestamp>\\n`` + the checkpoint text.

Parsing is bounded before any signature is checked (note size, number of
signatures, lines, origin charset), signatures from unknown keys are ignored as
the spec requires, and a signature from a known key that fails rejects the note.

``WitnessState`` is the pure rule a member node applies before cosigning: never
a smaller tree than one already cosigned, and only with a valid consistency
proof from the last one; two signed checkpoints that cannot be reconciled are
kept as evidence of a split view.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rcf.trust import merkle
from rcf.trust.clock import now_ms
from rcf.trust.errors import ConfigError, VerificationError
from rcf.trust.keys import SigningKey, verify_signature

EM_DASH = "\u2014"
SIG_PREFIX = EM_DASH + " "
SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04
COSIGNATURE_V1_HEADER = "cosignature/v1\n"

MAX_NOTE_BYTES = 64 * 1024
MAX_SIGNATURES = 100  # the spec asks for at least 16
MAX_EXTENSION_LINES = 8
MAX_TEXT_BYTES = 4096
MAX_NAME_LENGTH = 255
MAX_TIMESTAMP = 2**63 - 1

# Origins and the names of our own keys: a schema-less URL in plain ASCII.
# (Names of keys we do not know only need to follow the looser spec rules.)
ORIGIN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:/@-]{0,254}")
SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")


def _malformed(message: str) -> VerificationError:
    return VerificationError(message, reason="malformed_note")


def _b64decode_canonical(text: str) -> bytes:
    """Standard padded base64 that re-encodes to the same string (no malleable encodings)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _malformed("A note holds malformed base64.") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise _malformed("A note holds non-canonical base64.")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def check_name(name: str, what: str = "key name") -> str:
    """A name we sign under or an origin: ASCII schema-less URL characters, no spaces or '+'."""
    if not isinstance(name, str) or not ORIGIN_RE.fullmatch(name):
        raise ConfigError(
            f"The {what} must be 1 to 255 characters of letters, digits and ._~:/@- ."
        )
    return name


def _is_spec_key_name(name: str) -> bool:
    return (
        0 < len(name) <= MAX_NAME_LENGTH
        and "+" not in name
        and not any(c.isspace() or ord(c) < 0x20 for c in name)
    )


def key_id(name: str, public_key: bytes, sig_type: int = SIG_ED25519) -> bytes:
    """The 4-byte key ID: SHA-256(name || 0x0A || sig_type || public key)[:4]."""
    if len(public_key) != 32:
        raise VerificationError("An Ed25519 public key must be 32 bytes.", reason="bad_key")
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


# -- verifier keys (name+hexid+base64(type||key)) ---------------------------


@dataclass(frozen=True)
class VerifierKey:
    """A named Ed25519 public key and the signature type it verifies (0x01 or 0x04)."""

    name: str
    public_key: bytes
    sig_type: int = SIG_ED25519

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key, self.sig_type)

    def encode(self) -> str:
        """The C2SP vkey string: ``<name>+<hex key ID>+<base64(type || public key)>``."""
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([self.sig_type]) + self.public_key)}"


def parse_verifier_key(vkey: str) -> VerifierKey:
    """Parse a vkey string; its key ID must match its name and key."""
    name, sep, rest = vkey.partition("+")
    hex_id, sep2, material = rest.partition("+")
    if not (sep and sep2 and _is_spec_key_name(name) and re.fullmatch(r"[0-9a-f]{8}", hex_id)):
        raise ConfigError("A verifier key must read <name>+<8 hex digits>+<base64 key>.")
    try:
        raw = _b64decode_canonical(material)
    except VerificationError as exc:
        raise ConfigError("A verifier key holds malformed base64.") from exc
    if len(raw) != 33 or raw[0] not in (SIG_ED25519, SIG_COSIGNATURE_V1):
        raise ConfigError("A verifier key must be an Ed25519 key of type 0x01 or 0x04.")
    key = VerifierKey(name=name, public_key=raw[1:], sig_type=raw[0])
    if key.key_id.hex() != hex_id:
        raise ConfigError("A verifier key's key ID does not match its name and key.")
    return key


# -- signed notes -----------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{SIG_PREFIX}{self.name} {_b64(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """A parsed signed note: the text (ending in a newline) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def format(self) -> str:
        """The note as it travels: text, blank line, signature lines."""
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    def with_signature(self, sig: NoteSignature) -> Note:
        """This note plus sig, replacing an earlier signature by the same key."""
        kept = tuple(s for s in self.signatures if (s.name, s.key_id) != (sig.name, sig.key_id))
        if len(kept) + 1 > MAX_SIGNATURES:
            raise VerificationError("The note has too many signatures.", reason="malformed_note")
        return Note(self.text, (*kept, sig))


def parse_note(note: str | bytes) -> Note:
    """Split a signed note into text and signatures, enforcing the spec and our bounds."""
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise _malformed(f"The note is larger than {MAX_NOTE_BYTES} bytes.")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _malformed("The note is not valid UTF-8.") from exc
    elif not isinstance(note, str):
        raise _malformed("The note must be text.")
    if len(note) > MAX_NOTE_BYTES:
        raise _malformed(f"The note is larger than {MAX_NOTE_BYTES} bytes.")
    try:
        size = len(note.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise _malformed("The note is not valid UTF-8.") from exc
    if size > MAX_NOTE_BYTES:
        raise _malformed(f"The note is larger than {MAX_NOTE_BYTES} bytes.")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise _malformed("The note contains a control character other than newline.")
    if not note.endswith("\n"):
        raise _malformed("The note does not end with a newline.")
    split = note.rfind("\n\n")
    if split < 0:
        raise _malformed("The note has no blank line before its signatures.")
    text, sig_block = note[: split + 1], note[split + 2 :]
    lines = sig_block.split("\n")[:-1]
    if not lines:
        raise _malformed("The note has no signature lines.")
    if len(lines) > MAX_SIGNATURES:
        raise _malformed(f"The note has more than {MAX_SIGNATURES} signatures.")
    signatures = []
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise _malformed("A signature line does not start with an em dash and a space.")
        parts = line[len(SIG_PREFIX) :].split(" ")
        if len(parts) != 2 or not _is_spec_key_name(parts[0]):
            raise _malformed("A signature line is not '— <key name> <base64>'.")
        raw = _b64decode_canonical(parts[1])
        if len(raw) < 5:
            raise _malformed("A signature is too short to hold a key ID and a signature.")
        signatures.append(NoteSignature(name=parts[0], key_id=raw[:4], signature=raw[4:]))
    return Note(text=text, signatures=tuple(signatures))


def sign_note(text: str, *, name: str, key: SigningKey) -> Note:
    """A note with text signed by key (plain Ed25519, type 0x01) under name."""
    check_name(name)
    sig = NoteSignature(
        name=name, key_id=key_id(name, key.public_key), signature=key.sign(text.encode())
    )
    return Note(text=text, signatures=(sig,))


def _matching(note: Note, name: str, kid: bytes) -> list[NoteSignature]:
    return [s for s in note.signatures if s.name == name and s.key_id == kid]


def verify_note(note: Note, *, name: str, public_key: bytes) -> None:
    """Require a valid plain Ed25519 signature by (name, public_key) on the note."""
    sigs = _matching(note, name, key_id(name, public_key))
    if not sigs:
        raise VerificationError(f"The note is not signed by {name}.", reason="unsigned")
    for sig in sigs:
        try:
            verify_signature(
                public_key=public_key, message=note.text.encode(), signature=sig.signature
            )
        except VerificationError as exc:
            raise VerificationError(
                f"The signature by {name} on the note does not verify."
            ) from exc


# -- checkpoints ------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, number of entries and RFC 6962 root hash."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not ORIGIN_RE.fullmatch(self.origin):
            raise VerificationError(
                "The checkpoint origin is not a plain schema-less URL.",
                reason="malformed_checkpoint",
            )
        if type(self.size) is not int or not 0 <= self.size <= merkle.MAX_TREE_SIZE:
            raise VerificationError(
                "The checkpoint size is out of range.", reason="malformed_checkpoint"
            )
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != merkle.HASH_SIZE:
            raise VerificationError(
                "The checkpoint root is not a 32-byte hash.", reason="malformed_checkpoint"
            )
        if len(self.extensions) > MAX_EXTENSION_LINES or any(
            not e or "\n" in e or any(ord(c) < 0x20 for c in e) for e in self.extensions
        ):
            raise VerificationError(
                "The checkpoint has malformed extension lines.", reason="malformed_checkpoint"
            )

    def body(self) -> str:
        """The note text: origin, size, base64 root, extension lines, each ending in newline."""
        lines = [self.origin, str(self.size), _b64(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    def same_tree(self, other: Checkpoint) -> bool:
        """Same origin, size and root (extension lines carry no statement about the tree)."""
        return (self.origin, self.size, self.root_hash) == (
            other.origin,
            other.size,
            other.root_hash,
        )


def parse_checkpoint_body(text: str) -> Checkpoint:
    """Parse a checkpoint's note text strictly."""
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise VerificationError("The checkpoint text is too long.", reason="malformed_checkpoint")
    if not text.endswith("\n"):
        raise VerificationError(
            "The checkpoint text does not end with a newline.", reason="malformed_checkpoint"
        )
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise VerificationError(
            "A checkpoint needs origin, size and root lines.", reason="malformed_checkpoint"
        )
    if len(lines) > 3 + MAX_EXTENSION_LINES:
        raise VerificationError(
            "The checkpoint has too many extension lines.", reason="malformed_checkpoint"
        )
    origin, size_line, root_line, *extensions = lines
    if not SIZE_RE.fullmatch(size_line):
        raise VerificationError(
            "The checkpoint size is not a decimal number without leading zeros.",
            reason="malformed_checkpoint",
        )
    try:
        root = _b64decode_canonical(root_line)
    except VerificationError as exc:
        raise VerificationError(
            "The checkpoint root is not canonical base64.", reason="malformed_checkpoint"
        ) from exc
    return Checkpoint(
        origin=origin, size=int(size_line), root_hash=root, extensions=tuple(extensions)
    )


def sign_checkpoint(checkpoint: Checkpoint, *, key: SigningKey, name: str | None = None) -> str:
    """The signed checkpoint note; the key name defaults to the origin, as the spec advises."""
    return sign_note(checkpoint.body(), name=name or checkpoint.origin, key=key).format()


def open_checkpoint(
    note_text: str | bytes,
    hub_name: str,
    hub_public_key: bytes,
    *,
    origin: str | None = None,
) -> Checkpoint:
    """Verify the hub's signature on a checkpoint note and return the checkpoint.

    origin is the log the caller expects (defaults to hub_name); a checkpoint of
    another log is refused even if the hub signed it.
    """
    note = parse_note(note_text)
    verify_note(note, name=hub_name, public_key=hub_public_key)
    checkpoint = parse_checkpoint_body(note.text)
    if checkpoint.origin != (origin or hub_name):
        raise VerificationError(
            "The checkpoint is for another log than the one expected.", reason="wrong_origin"
        )
    return checkpoint


# -- cosignatures -----------------------------------------------------------


def cosignature_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: header line, time line, then the checkpoint text."""
    return f"{COSIGNATURE_V1_HEADER}time {timestamp}\n{text}".encode()


def cosign(
    note_text: str | bytes, *, name: str, key: SigningKey, timestamp: int | None = None
) -> str:
    """The note with a cosignature/v1 line by this witness added (or replaced).

    The caller decides whether to cosign (see WitnessState); this only signs.
    """
    check_name(name, "witness name")
    note = parse_note(note_text)
    parse_checkpoint_body(note.text)  # only checkpoints are cosigned
    ts = now_ms() // 1000 if timestamp is None else timestamp
    if type(ts) is not int or not 0 <= ts <= MAX_TIMESTAMP:
        raise ConfigError("A cosignature timestamp must be from 0 to 2^63-1 seconds.")
    signature = ts.to_bytes(8, "big") + key.sign(cosignature_message(note.text, ts))
    sig = NoteSignature(
        name=name, key_id=key_id(name, key.public_key, SIG_COSIGNATURE_V1), signature=signature
    )
    return note.with_signature(sig).format()


def cosignature_timestamp(sig: NoteSignature) -> int:
    """The time a cosignature/v1 claims; raises if the signature cannot be one."""
    if len(sig.signature) != 8 + 64:
        raise VerificationError(
            "A cosignature must be 8 bytes of time and a 64-byte signature.",
            reason="bad_cosignature",
        )
    ts = int.from_bytes(sig.signature[:8], "big")
    if ts > MAX_TIMESTAMP:
        raise VerificationError("A cosignature's time is out of range.", reason="bad_cosignature")
    return ts


def verify_cosignatures(
    note_text: str | bytes,
    witnesses: Mapping[str, bytes],
    quorum: int,
    *,
    not_after: int | None = None,
) -> dict[str, int]:
    """Check the witnesses' cosignatures on a checkpoint note; require at least quorum of them.

    witnesses maps witness name to Ed25519 public key. Returns name → cosignature
    time of every witness whose cosignature verifies. A failing cosignature by a
    known witness rejects the note; one dated after not_after (unix seconds),
    when given, is not counted.
    """
    if type(quorum) is not int or not 1 <= quorum <= len(witnesses):
        raise ConfigError("The witness quorum must be between 1 and the number of witnesses.")
    note = parse_note(note_text)
    parse_checkpoint_body(note.text)
    valid: dict[str, int] = {}
    for name, public_key in witnesses.items():
        kid = key_id(name, public_key, SIG_COSIGNATURE_V1)
        for sig in _matching(note, name, kid):
            ts = cosignature_timestamp(sig)
            try:
                verify_signature(
                    public_key=public_key,
                    message=cosignature_message(note.text, ts),
                    signature=sig.signature[8:],
                )
            except VerificationError as exc:
                raise VerificationError(
                    f"The cosignature by witness {name} does not verify.",
                    reason="bad_cosignature",
                ) from exc
            if not_after is None or ts <= not_after:
                valid[name] = max(ts, valid.get(name, 0))
    if len(valid) < quorum:
        raise VerificationError(
            f"The checkpoint has {len(valid)} valid witness cosignatures; {quorum} are needed.",
            reason="no_quorum",
        )
    return valid


def open_final_checkpoint(
    note_text: str | bytes,
    *,
    hub_name: str,
    hub_public_key: bytes,
    witnesses: Mapping[str, bytes],
    quorum: int,
    origin: str | None = None,
) -> Checkpoint:
    """A checkpoint signed by the hub and cosigned by a quorum of witnesses: final."""
    checkpoint = open_checkpoint(note_text, hub_name, hub_public_key, origin=origin)
    verify_cosignatures(note_text, witnesses, quorum)
    return checkpoint


def merge_signatures(*notes: str | bytes) -> str:
    """One note carrying every signature line of notes that share the same text."""
    if not notes:
        raise ValueError("merge_signatures needs at least one note")
    merged = parse_note(notes[0])
    for other_text in notes[1:]:
        other = parse_note(other_text)
        if other.text != merged.text:
            raise VerificationError(
                "Cannot merge the signatures of two different checkpoints.",
                reason="different_checkpoints",
            )
        for sig in other.signatures:
            if sig not in merged.signatures:
                merged = merged.with_signature(sig)
    return merged.format()


# -- witnessing -------------------------------------------------------------


@dataclass(frozen=True)
class SplitViewEvidence:
    """Two checkpoints the hub signed that it could not show to be one log."""

    earlier_note: str
    later_note: str
    proof: tuple[bytes, ...]
    detail: str


@dataclass(frozen=True)
class WitnessDecision:
    """Whether to cosign, why (a reason code and a sentence), and the state to keep."""

    cosign: bool
    reason: str
    message: str
    state: WitnessState
    evidence: SplitViewEvidence | None = None


@dataclass(frozen=True)
class WitnessState:
    """What one witness remembers of one log: the last checkpoint it cosigned."""

    origin: str
    last: Checkpoint | None = None
    last_note: str = ""

    def review(self, new: Checkpoint, proof: Sequence[bytes], *, note: str = "") -> WitnessDecision:
        """Decide on a checkpoint whose hub signature the caller has verified.

        proof is the consistency proof from the last cosigned size to new.size;
        note is the signed note new came from (kept as evidence).
        """
        if new.origin != self.origin:
            return self._refuse("wrong_origin", "The checkpoint is for another log.")
        advanced = WitnessState(origin=self.origin, last=new, last_note=note)
        last = self.last
        if last is None:
            return WitnessDecision(True, "first_checkpoint", "First checkpoint seen.", advanced)
        if new.size < last.size:
            return self._refuse(
                "smaller_size",
                f"The checkpoint has {new.size} entries, fewer than the {last.size} "
                "already cosigned.",
            )
        if new.size == last.size:
            if new.root_hash == last.root_hash and not proof:
                return WitnessDecision(True, "same_checkpoint", "Same tree as before.", advanced)
            return self._split(new, proof, note, "Two checkpoints of the same size differ.")
        if last.size == 0:
            if last.root_hash == merkle.EMPTY_ROOT:
                return WitnessDecision(True, "consistent", "The empty log grew.", advanced)
            return self._split(new, proof, note, "The empty checkpoint has a wrong root.")
        try:
            merkle.verify_consistency(last.size, new.size, proof, last.root_hash, new.root_hash)
        except VerificationError as exc:
            return self._split(new, proof, note, exc.message)
        return WitnessDecision(True, "consistent", "The log grew consistently.", advanced)

    def review_note(
        self,
        note_text: str,
        proof: Sequence[bytes],
        *,
        hub_name: str,
        hub_public_key: bytes,
    ) -> WitnessDecision:
        """Verify the hub's signature (raising VerificationError if forged), then review."""
        checkpoint = open_checkpoint(note_text, hub_name, hub_public_key, origin=self.origin)
        return self.review(checkpoint, proof, note=note_text)

    def _refuse(self, reason: str, message: str) -> WitnessDecision:
        return WitnessDecision(False, reason, message, self)

    def _split(
        self, new: Checkpoint, proof: Sequence[bytes], note: str, detail: str
    ) -> WitnessDecision:
        evidence = SplitViewEvidence(
            earlier_note=self.last_note, later_note=note, proof=tuple(proof), detail=detail
        )
        return WitnessDecision(
            False,
            "inconsistent",
            "The hub did not prove that this checkpoint extends the last one cosigned: "
            "possible split view.",
            self,
            evidence,
        )
