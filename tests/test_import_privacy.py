"""No import message, log line or audit record repeats a value from the file.

Files are built to trip every message path the importer has, for every
dataset, with a known name and document number in every position a careless
message could echo them from. Afterwards neither may appear in stdout,
stderr, the logs, the audit log or any file but the store and the rejects file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rcf.trust.dictionary import default_dictionary
from tests.network import enrolled_folder

RCF = str(Path(sys.executable).parent / "rcf")
NAME = "Myin Thein"
DOC = "MA7654321"
SECRETS = (NAME, DOC, NAME.upper(), NAME.lower())
LINKED = f"MMR:{DOC}"

PERSONS = default_dictionary().datasets["persons"].columns
GOOD_PERSON = {
    "record_id": "P-1",
    "name_original": "",
    "name_latin": "Htun Min",
    "aliases": "",
    "date_of_birth": "1990",
    "sex": "M",
    "nationality": "MMR",
    "document_numbers": "MMR:MA1234567",
    "category": "irregular_migrant",
    "local_reference": "",
    "recorded_on": "2024-01-01",
}
MOVEMENT = {
    "record_id": "M-1",
    "event_date": "2024-03-01",
    "reporting_state": "THA",
    "location": "TH-85",
    "route": "sea",
    "direction": "arrival",
    "nationality": "MMR",
    "sex": "M",
    "age_band": "18-59",
    "outcome": "intercepted",
    "persons": "3",
}


def csv_line(values: list[str]) -> str:
    return ",".join(f'"{v}"' if "," in v else v for v in values)


def person(**changes: str) -> str:
    return csv_line([changes.get(c, GOOD_PERSON[c]) for c in PERSONS])


def movement(**changes: str) -> str:
    return csv_line([changes.get(c, v) for c, v in MOVEMENT.items()])


def aggregate_rows(dataset: str) -> list[str]:
    """A header and one bad row per field of an aggregate dataset, the name in that field."""
    ds = default_dictionary().datasets[dataset]
    good = {c: _good_value(dataset, c) for c in ds.columns}
    rows = [",".join(ds.columns)]
    for i, column in enumerate(ds.columns[1:], start=2):
        values = {**good, "record_id": f"R-{i}", column: NAME}
        rows.append(csv_line([values[c] for c in ds.columns]))
    rows.append(csv_line([{**good, "record_id": f"{NAME}-{DOC}"}[c] for c in ds.columns]))
    rows.append(csv_line([{**good, "record_id": f"{NAME}-{DOC}"}[c] for c in ds.columns]))
    return rows


def _good_value(dataset: str, column: str) -> str:
    ds = default_dictionary().datasets[dataset]
    if column == "record_id":
        return "R-1"
    if column in ds.measures:
        return "4"
    dim = ds.dimension(column)
    assert dim is not None
    if dim.kind == "code":
        return dim.codes[0]
    return "2024-01" if dim.kind == "month" else "2024-01-02"


def cases() -> dict[str, tuple[str, str]]:
    """file name → (dataset, content)."""
    header = ",".join(PERSONS)
    out: dict[str, tuple[str, str]] = {
        # No header: the first record is taken for one.
        "headerless.csv": ("persons", "\n".join([person(name_latin=NAME, document_numbers=LINKED),
                                                 person(record_id="P-2")])),
        "headerless-agg.csv": ("irregular_movements", movement(nationality=NAME) + "\n"),
        "dup-header.csv": ("persons", f"record_id,{NAME},{NAME}\nP-1,a,b\n"),
        "extra-header.csv": ("persons", f"{header},{NAME},{DOC}\n{person()},x,y\n"),
        "persons-rows.csv": ("persons", "\n".join([
            header,
            person(record_id="P-2", sex=NAME),
            person(record_id="P-3", nationality=DOC),
            person(record_id="P-4", category=NAME),
            person(record_id="P-5", document_numbers=DOC),
            person(record_id="P-6", document_numbers=f"{NAME}:{DOC}"),
            person(record_id="P-7", date_of_birth=NAME),
            person(record_id="P-8", recorded_on=DOC),
            person(record_id=NAME * 20),
            person(record_id="P-9", name_latin=NAME + "\x01"),
            person(record_id="P-10", aliases=NAME * 60),
            person(record_id="P-11", name_latin=""),
            f"P-12,{NAME},{DOC}",
            person(record_id=f"{NAME}-{DOC}"),
            person(record_id=f"{NAME}-{DOC}", name_latin=NAME),
            f'P-13,"{NAME},{DOC}',
        ])),
        "documents-rows.csv": ("documents", "\n".join([
            "record_id,issuing_state,document_type,document_number,status,date_reported",
            f"D-1,MMR,passport,{DOC.lower()} {NAME},stolen,2024-01-02",
            f"D-2,{NAME},passport,{DOC},stolen,2024-01-02",
            f"D-3,MMR,{DOC},{DOC},stolen,2024-01-02",
            f"D-4,MMR,passport,{DOC},{NAME},2024-01-02",
            f"D-5,MMR,passport,{DOC},stolen,{NAME}",
        ])),
        "persons.jsonl": ("persons", "\n".join([
            json.dumps({**GOOD_PERSON, "name_latin": NAME}),
            json.dumps({**GOOD_PERSON, "record_id": "P-2", NAME: DOC}),
            json.dumps({**GOOD_PERSON, "record_id": "P-3", "sex": NAME}),
            json.dumps({**GOOD_PERSON, "record_id": "P-4", "name_latin": [NAME, DOC]}),
            json.dumps(f"{NAME} {DOC}"),
            '{"record_id": "P-5", "name_latin": "' + NAME + '", "document_numbers": "' + DOC,
        ])),
        "keys-are-values.jsonl": ("persons", json.dumps({NAME: DOC, DOC: NAME}) + "\n"),
        "latin1.csv": ("persons", ""),  # written as bytes below
    }  # fmt: skip
    for dataset in (
        "irregular_movements",
        "trafficking_victims",
        "document_fraud_detections",
        "asylum_applications",
    ):
        out[f"{dataset}-rows.csv"] = (dataset, "\n".join(aggregate_rows(dataset)) + "\n")
    return out


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return enrolled_folder(tmp_path_factory.mktemp("net"), "TH")


def run(node_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RCF_NODE_DIR": str(node_dir), "RCF_LOG_LEVEL": "debug"}
    return subprocess.run(
        [RCF, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def leaks(text: str | bytes) -> list[str]:
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return [s for s in SECRETS if s.encode() in data]


def test_no_message_log_or_audit_record_repeats_a_value(node_dir: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    files = []
    for name, (dataset, content) in cases().items():
        path = inputs / name
        if name == "latin1.csv":
            path.write_bytes(
                (",".join(PERSONS) + "\n" + person(name_latin=NAME + " é")).encode("latin-1")
            )
        else:
            path.write_text(content, encoding="utf-8")
        assert leaks(path.read_bytes()), name
        files.append((path, dataset))

    outputs = []
    for path, dataset in files:
        for extra in ((), ("--skip-invalid",), ("--skip-invalid", "--json")):
            r = run(node_dir, "data", "import", str(path), "--dataset", dataset, *extra)
            assert "Traceback" not in r.stderr, r.stderr
            outputs.append((f"{path.name} {extra}", r.stdout + r.stderr))
    # Every case was refused or reported something: none passed silently.
    assert all(("line " in o or "error" in o or "rejected" in o) for _, o in outputs)
    leaked = [(where, leaks(text)) for where, text in outputs if leaks(text)]
    assert not leaked, leaked

    audit = run(node_dir, "audit", "show", "--limit", "1000", "--json")
    assert audit.returncode == 0 and not leaks(audit.stdout + audit.stderr)
    imports = [a for a in json.loads(audit.stdout) if a["query_type"] == "data_import"]
    assert imports, "no import was committed"

    # Only the store and the rejects files may hold the values.
    allowed = {"data.db", "data.db-wal", "data.db-shm"}
    for folder in (node_dir, inputs):
        for path in folder.rglob("*"):
            if not path.is_file() or path.name in allowed or path.name.endswith(".rejects.csv"):
                continue
            if folder == inputs and path.name in {p.name for p, _ in files}:
                continue
            assert not leaks(path.read_bytes()), path
    # The rejects files do hold them: that is where the operator finds the bad rows.
    assert leaks((inputs / "persons-rows.csv.rejects.csv").read_bytes())
