"""`rcf bench identity`: hit/no-hit checks over real nodes, each figure beside its bound.

(a) ``check_p50_ms`` / ``check_p99_ms``: one person checked against one responder
    (TH, a child process holding synthetic persons), end to end as the node does
    it (keys, blinding, two signed rounds, finalising), sequentially; beside the
    signed ``Ping`` between the same two nodes (``ping_p50_ms``);
    ``check_to_ping_ratio`` = check p50 / ping p50, goal < 3.
(b) ``manifest_wall_s``: a manifest of M persons checked against the four
    Steering Group nodes (AU, ID, NZ, TH; child processes each holding N synthetic
    persons) by a fifth member (MY, in this process), all responders in parallel:
    ``manifest_persons_per_s`` = M / wall. ``manifest_crypto_bound_s``: the same
    number of bare ristretto255 scalar multiplications as the exchange performs
    (one blind per key, then per responder one evaluation and one unblinding),
    spread over every core; ``manifest_crypto_ratio`` = wall / bound, goal <= 2.
(c) ``index_*``: the token-index build, from ``benchmarks.identity_index``.
``psi_peer_s``: the same intersections with ``openmined-psi`` when installed (the
``psi`` extra); otherwise -1 and a note.

Full sizes: N = 100,000 persons per node, M = 10,000 (minutes of index building
on two cores); ``quick``: N = 5,000, M = 1,000 (and a smaller index run).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from rcf.benchmarks import identity_index
from rcf.benchmarks.common import BenchResult, percentile
from rcf.devnet.local_network import LocalNetwork, MemberSpec, rcf_command
from rcf.devnet.synthetic import generate_member_data, generate_rows
from rcf.node.data.dictionary import load_dictionary
from rcf.node.data.importer import import_file
from rcf.node.data.store import DataStore
from rcf.node.federation.ping import PING
from rcf.node.federation.server import NodeServer
from rcf.node.identity.index import default_workers, worker_pool
from rcf.node.identity.requester import Subject, check_responder, prepare, run_check

RESPONDERS = ("AU", "ID", "NZ", "TH")
ASKER = "MY"
POLICY = """
[[rule]]
id = "ping"
requesters = ["*"]
query = "Ping"

[[rule]]
id = "bench-identity"
requesters = ["*"]
query = "IdentityCheck"
datasets = ["persons", "documents"]
detail = "hit_with_reference"
max_batch = 10000
"""
GOAL_CHECK_RATIO = 3.0
GOAL_CRYPTO_RATIO = 2.0


def _bare(secret: bytes, count: int) -> int:
    return identity_index._bare_mults(secret, count)


def _noop() -> None:
    return None


def crypto_bound_s(mults: int) -> float:
    """Seconds for mults bare scalar multiplications over every core (workers started first)."""
    workers = default_workers()
    secret = bytes(range(1, 33))[:31] + b"\x00"
    with worker_pool(workers) as pool:
        for warm in [pool.submit(_noop) for _ in range(workers)]:
            warm.result()
        share = -(-mults // workers)
        start = time.perf_counter()
        parts = [pool.submit(_bare, secret, min(share, mults - i * share)) for i in range(workers)]
        if sum(p.result() for p in parts) != mults:
            raise RuntimeError("the bound ran another number of multiplications")
        return time.perf_counter() - start


def manifest(m: int) -> list[Subject]:
    """M passengers: the asker's synthetic persons (a tenth from the shared pool)."""
    out = []
    for row in generate_rows(ASKER, "persons", seed=2024, rows=m):
        docs = tuple(
            tuple(ref.split(":", 1)) for ref in str(row["document_numbers"]).split(";") if ref
        )
        out.append(
            Subject(
                name=str(row["name_latin"]),
                date_of_birth=str(row["date_of_birth"]),
                nationality=str(row["nationality"]),
                documents=docs,  # type: ignore[arg-type]
            )
        )
    return out


def _apply_policy(net: LocalNetwork, member: str, folder: Path) -> None:
    path = folder / f"{member}-bench.toml"
    path.write_text(f'[policy]\nmember = "{member}"\n' + POLICY)
    subprocess.run(
        [*rcf_command(), "policy", "apply", str(path), "--node-dir",
         str(net.node_layout(member).root)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def _psi_peer_s(result: BenchResult, subjects: int, n: int) -> None:
    try:
        import private_set_intersection.python as psi  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:
        result.add("psi_peer_s", -1.0, "openmined-psi not installed (extra 'psi'): skipped")
        return
    client_items = [f"item-{i}" for i in range(subjects)]
    server_items = [f"item-{i * 7}" for i in range(n)]
    start = time.perf_counter()
    for _ in RESPONDERS:
        client = psi.client.CreateWithNewKey(True)
        server = psi.server.CreateWithNewKey(True)
        setup = server.CreateSetupMessage(0.0, len(client_items), server_items,
                                          psi.DataStructure.RAW)  # fmt: skip
        request = client.CreateRequest(client_items)
        response = server.ProcessRequest(request)
        client.GetIntersectionSize(setup, response)
    result.add("psi_peer_s", time.perf_counter() - start,
               "openmined-psi, same sizes, per responder in turn")  # fmt: skip


def run(*, quick: bool = False) -> BenchResult:
    n = int(os.environ.get("RCF_BENCH_IDENTITY_PERSONS", "5000" if quick else "100000"))
    m = int(os.environ.get("RCF_BENCH_IDENTITY_MANIFEST", "1000" if quick else "10000"))
    checks = 50 if quick else 300
    result = BenchResult("identity")
    with tempfile.TemporaryDirectory(prefix="rcf-bench-identity-") as tmp:
        root = Path(tmp)
        net = LocalNetwork(root)
        members = [MemberSpec(x, x, groups=("steering-group",)) for x in (*RESPONDERS, ASKER)]
        net.init_hub(members)
        asker: NodeServer | None = None
        try:
            net.start_hub()
            asker_layout = net.enroll(ASKER)  # before the responders start: they know its key
            index_s = 0.0
            for member in RESPONDERS:
                layout = net.enroll(member)
                files = generate_member_data(member, root / "data", seed=2024, rows=n,
                                             datasets=["persons"])  # fmt: skip
                store = DataStore(layout.data_db, dictionary=load_dictionary(layout))
                try:
                    started = time.perf_counter()
                    import_file(store, files["persons"], dataset="persons")
                    index_s += time.perf_counter() - started
                finally:
                    store.close()
                net.start_node(member)
                _apply_policy(net, member, root)
            asker = NodeServer(asker_layout)
            asker.refresh_directory()
            peers = asker.peers

            # (a) one check against one responder, beside a signed Ping.
            one = Subject("Mohammed Rahim Khan", "1985-03-14", "AFG")

            def single() -> None:
                r = check_responder(peers, prepare([one], "persons"), "TH",
                                    purpose="border-control", timeout_s=30)  # fmt: skip
                if r.error:
                    raise RuntimeError(r.error)

            def ping() -> None:
                peers.call(PING, responder="TH", purpose="connectivity-check",
                           fill=lambda r: setattr(r, "data", b"ping"), timeout_s=30)  # fmt: skip

            for fn in (single, ping):
                for _ in range(10):
                    fn()
            check_ms: list[float] = []
            ping_ms: list[float] = []
            for _ in range(checks):  # interleaved: shared-machine load weighs on both
                for fn, into in ((single, check_ms), (ping, ping_ms)):
                    t0 = time.perf_counter()
                    fn()
                    into.append((time.perf_counter() - t0) * 1000)

            # (b) the manifest against the four nodes.
            subjects = manifest(m)
            started = time.perf_counter()
            prepared = prepare(subjects, "persons")
            results = run_check(peers, prepared, list(RESPONDERS), purpose="border-control",
                                timeout_s=600)  # fmt: skip
            wall = time.perf_counter() - started
            failed = [r for r in results if r.error]
            if failed:
                raise RuntimeError(f"{failed[0].responder}: {failed[0].error}")
            hits = sum(o != 1 for r in results for o in r.outcomes)
            keys = len(prepared.inputs)
            mults = keys * (1 + 2 * len(RESPONDERS))
        finally:
            if asker is not None:
                asker.stop(grace=0)
            net.stop_all()
    bound = crypto_bound_s(mults)
    p50, ping50 = percentile(check_ms, 0.5), percentile(ping_ms, 0.5)
    result.add("check_p50_ms", p50, "one person, one responder, both rounds, sequential")
    result.add("check_p99_ms", percentile(check_ms, 0.99), "sequential")
    result.add("ping_p50_ms", ping50, "bound: signed Ping between the same nodes")
    result.add("check_to_ping_ratio", p50 / ping50, f"goal < {GOAL_CHECK_RATIO}")
    result.add("manifest_wall_s", wall, f"{m:,} persons x {len(RESPONDERS)} nodes of {n:,}")
    result.add("manifest_persons_per_s", m / wall, f"{hits} hits/possible hits in all")
    result.add("manifest_crypto_bound_s", bound,
               f"bound: {mults:,} bare scalar mults ({keys:,} keys), all cores")  # fmt: skip
    result.add("manifest_crypto_ratio", wall / bound, f"goal <= {GOAL_CRYPTO_RATIO}")
    result.add("index_import_persons_per_s", len(RESPONDERS) * n / index_s,
               "persons import incl. token index, per node in turn")  # fmt: skip
    index = identity_index.run(quick=quick)
    for name in ("index_persons_per_s", "index_bound_persons_per_s", "index_ratio"):
        result.add(name, index.figures[name], index.notes.get(name, ""))
    _psi_peer_s(result, m, n)
    return result
