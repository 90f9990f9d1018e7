"""What an officer types into the check form, turned into the operator API's subjects,
and the per-member results shown back. Plain functions; nothing here logs a value."""

from __future__ import annotations

from dataclasses import dataclass

from rcf.node.identity.errors import InvalidIdentifier
from rcf.node.identity.mrz import parse_mrz
from rcf.protos.v1 import identity_pb2
from rcf.trust.errors import ConfigError

LEVELS = {
    identity_pb2.IDENTITY_OUTCOME_HIT: "HIT",
    identity_pb2.IDENTITY_OUTCOME_POSSIBLE_HIT: "possible hit",
    identity_pb2.IDENTITY_OUTCOME_NO_HIT: "no hit",
}
PURPOSES = ("border-control", "investigation")
MAX_FIELD = 200


def _clean(value: str, what: str) -> str:
    value = value.strip()
    if len(value) > MAX_FIELD:
        raise ConfigError(f"The {what} is too long.")
    return value


def person_subject(name: str, dob: str, nationality: str, number: str = "", issuer: str = ""
                   ) -> identity_pb2.CheckSubject:  # fmt: skip
    """A person to check: a name is required; a document goes with its issuing state."""
    name, dob = _clean(name, "name"), _clean(dob, "date of birth")
    nationality, number = _clean(nationality, "nationality").upper(), _clean(number, "number")
    issuer = _clean(issuer, "issuing state").upper()
    if not name:
        raise ConfigError("Give the person's name (with date of birth and nationality).")
    subject = identity_pb2.CheckSubject(name=name, date_of_birth=dob, nationality=nationality)
    if number or issuer:
        if not (number and issuer):
            raise ConfigError("Give a document number together with its issuing state.")
        subject.documents.append(identity_pb2.DocumentRef(issuing_state=issuer, number=number))
    return subject


def document_subject(mrz: str, number: str, issuer: str) -> identity_pb2.CheckSubject:
    """A travel document to check, from a pasted MRZ or its number and issuing state."""
    mrz = mrz.strip()
    number, issuer = _clean(number, "number"), _clean(issuer, "issuing state").upper()
    if mrz:
        if number or issuer:
            raise ConfigError("Give either the MRZ or the number and issuing state, not both.")
        if len(mrz) > 400:
            raise ConfigError("The MRZ is too long.")
        try:
            doc = parse_mrz([line for line in mrz.splitlines() if line.strip()])
        except InvalidIdentifier as exc:
            raise ConfigError(f"The MRZ cannot be used: {exc}") from None
        number, issuer = doc.document_number, doc.issuing_state
    elif not (number and issuer):
        raise ConfigError("Paste the MRZ, or give the document number and issuing state.")
    return identity_pb2.CheckSubject(
        documents=[identity_pb2.DocumentRef(issuing_state=issuer, number=number)]
    )


def chosen_members(text: str, *, regional: bool) -> list[str]:
    members = [m.strip().upper() for m in text.replace(" ", ",").split(",") if m.strip()]
    if bool(members) == regional:
        raise ConfigError("Choose either the members to ask (e.g. TH, ID) or the whole region.")
    for m in members:
        if not (m.isalnum() and len(m) <= 16):
            raise ConfigError("Member ids are short codes such as TH or ID.")
    return members


@dataclass(frozen=True)
class MemberResult:
    member: str
    level: str  # HIT, possible hit, no hit, or "" when the member did not answer
    reference: str
    contact: str  # whom to call: agency, role, phone or e-mail
    error: str

    @property
    def is_hit(self) -> bool:
        return self.level in ("HIT", "possible hit")


def results(finals: list[identity_pb2.IdentityCheckUpdate]) -> list[MemberResult]:
    """One row per member asked, for the single subject checked."""
    out = []
    for f in sorted(finals, key=lambda u: u.responder):
        if f.error or not f.outcomes:
            out.append(MemberResult(f.responder, "", "", "", f.error or "no answer"))
            continue
        level = LEVELS.get(f.outcomes[0], "?")
        c = f.contact
        contact = ""
        if f.HasField("contact") and c.agency and level != "no hit":
            reach = ", ".join(x for x in (c.phone, c.email) if x)
            contact = f"{c.agency}, {c.role}" + (f" ({reach})" if reach else "")
        ref = f.references[0] if f.references else ""
        out.append(MemberResult(f.responder, level, ref, contact, ""))
    return out
