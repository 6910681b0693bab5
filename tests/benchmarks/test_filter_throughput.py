"""Benchmark: /filter at 1,000 candidates against a bare endpoint, for each kind of body.

The bare endpoint is a separate minimal Starlette app, served the same way (one uvicorn worker):
it reads the same body, decodes it with the service's JSON library (msgspec) and returns the
candidate ids. The ratio /filter : bare therefore measures the filter's own work per request.

- Bodies: item ids only (what a ranking service naturally sends), item ids with SIDs, and mixed
  (every other candidate with its SID). 1,000 candidates from a 10,000-item catalogue.
- Users and traffic: 1,000,000 users with predictions in a real redis-server, and three shapes
  of traffic. "uniform": each request names the next of the first 10,000 users in turn (every
  user soon held by the run cache); "zipf": users drawn from a Zipf law (s = 1.1) over all
  1,000,000, against the service with its run cache at the default capacity, whose hit ratio
  during the measured rounds is reported; "cold": the same Zipf draws against a service whose
  run cache is off, so every request reads Redis.
- Surfaces: every request names a surface of the thresholds file (enforce mode), so that its
  per-surface counters and score histogram are part of the measured work.
- Peak: closed loop with wrk (Debian package `wrk`; 1 thread, 4 connections, rounds of
  ROUND_SECONDS interleaved between the bare endpoints and /filter, best round of each).
- The bare endpoint runs with Python's default garbage collector settings, as a minimal app
  does; a second one with the collector tuned as the service tunes its own is measured too
  ("tuned"). A body of 1,000 SIDs decodes into a thousand lists, which at the default threshold
  set off young collections in the bare app that the service does not pay: the ratio against
  the tuned one is the like-for-like measure of the filter's own work.
- Calibrated: the Zipf traffic with the same bodies on a surface serving the calibrated
  score, against the same server, reported as its peak over the max-cosine Zipf peak (the
  calibrated score's ratio to bare over the max cosine's).
- Latency at half of peak: an open-loop generator at a fixed rate (half the median /filter
  peak on the Zipf traffic, with Zipf-drawn users) that counts each request's latency from its
  scheduled start, so queueing behind a stalled request is measured, not hidden (coordinated
  omission). The tuned bare server is measured at the same rate: its latency is the floor that
  the machine, the network stack and the generator set.

- Attribution (``test_filter_time_attribution``): the same id-only load on /filter, run cache
  off, on the Zipf traffic, as served and with parts of its own work taken out in the server
  process (the Redis read; the item-id lookup and scoring; both), each against the bare
  endpoint, to show where a request's time goes.

Run: pytest -m benchmark tests/benchmarks/test_filter_throughput.py -s
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import numpy as np
import psutil
import pytest

from conrec.codebook.artifact import EncoderWeights, save_artifact
from conrec.codebook.calibration import LogisticModel, save_calibration, user_layout
from conrec.service import main as service_main
from conrec.service.core.config import Settings
from conrec.service.main import create_app
from conrec.store.connection import connect
from conrec.store.runs import PredictionStore
from tests.redis_support import free_port, private_redis
from tests.service.support import scraped

pytestmark = pytest.mark.benchmark


@pytest.fixture(autouse=True)
def _wrk() -> None:
    if shutil.which("wrk") is None:
        pytest.fail("wrk is missing: `make bench` installs it (tests/deploy/tools.sh)")


ROOT = Path(__file__).resolve().parents[2]
N_ITEMS, N_CANDIDATES, N_USERS, K = 10_000, 1_000, 1_000_000, 20
UNIFORM_USERS, ZIPF_S = 10_000, 1.1
# Zipf draws, one per request; each wrk run starts at a fresh offset so none repeats another's.
ZIPF_DRAWS, DRAWS_PER_RUN = 3_000_000, 60_000
SURFACE = "home"
CALIBRATED_SURFACE = "feed"
THRESHOLDS = (
    "version: bench\ndefault: 0.9\nsurfaces: {home: 0.9, search: {mode: shadow}, "
    "feed: {score: calibrated, threshold: 0.9}}\n"
)
FACTORS = 16  # the calibrated score's factorisation width (its default)
CONNECTIONS, ROUNDS, ROUND_SECONDS, LATENCY_SECONDS = 4, 3, 8, 6
BODIES = ("ids", "sids", "mixed")
USER = "__USER__"
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)
# wrk: every request names the next user of a sequence (a file of user numbers, one per
# line, read from an offset); the body is the template around the user id.
WRK_SCRIPT = """
local prefix, suffix, users, i = nil, nil, {}, 0
function init(args)
  local f = io.open(args[1], "rb"); local body = f:read("*a"); f:close()
  local at = string.find(body, "__USER__", 1, true)
  prefix, suffix = string.sub(body, 1, at - 1), string.sub(body, at + 8)
  local skip, count = tonumber(args[3]), tonumber(args[4])
  local n = 0
  for line in io.lines(args[2]) do
    n = n + 1
    if n > skip then users[#users + 1] = line end
    if #users >= count then break end
  end
end
function request()
  i = i % #users + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
                    prefix .. "user-" .. users[i] .. suffix)
end
"""


def zipf_users(n_users: int, draws: int, s: float, seed: int = 1) -> np.ndarray:
    """``draws`` user numbers from a Zipf law over ``n_users`` (rank r has probability
    proportional to r^-s; user r - 1 is rank r), exactly, by inverse CDF."""
    weights = np.arange(1, n_users + 1, dtype=np.float64) ** -s
    cdf = np.cumsum(weights / weights.sum())
    u = np.random.default_rng(seed).random(draws)
    return np.minimum(np.searchsorted(cdf, u), n_users - 1)


@dataclass
class Traffic:
    """A file of user numbers and where the next wrk run starts reading it."""

    path: Path
    length: int
    at: int = 0

    def next_slice(self) -> tuple[int, int]:
        if self.length <= DRAWS_PER_RUN:
            return 0, self.length
        if self.at + DRAWS_PER_RUN > self.length:
            raise RuntimeError("the Zipf draws are used up: raise ZIPF_DRAWS")
        start, self.at = self.at, self.at + DRAWS_PER_RUN
        return start, DRAWS_PER_RUN


def distinct(codes: np.ndarray) -> np.ndarray:
    """Random SIDs made distinct, as the default collision policy (`reassign`) leaves a table:
    an item that drew a taken SID moves on to the next free last code. (A shared SID would send
    every SID body of the calibrated score to the item-id lookup.)"""
    taken: set[tuple[int, ...]] = set()
    for i, sid in enumerate(map(tuple, codes.tolist())):
        while sid in taken:
            sid = (*sid[:-1], (sid[-1] + 1) % 256)
        taken.add(sid)
        codes[i] = sid
    return codes


def build_world(root: Path, redis_url: str) -> dict[str, bytes]:
    """A 3 x 256 x 32 codebook over 10k items, 10k users' predictions; the body templates."""
    rng = np.random.default_rng(0)
    codes = distinct(rng.integers(0, 256, size=(N_ITEMS, 3), dtype=np.uint16))
    encoder = EncoderWeights((np.eye(32, dtype=np.float32),), (np.zeros(32, np.float32),))
    codewords = rng.normal(size=(3, 256, 32)).astype(np.float32)
    ids = [f"item-{i}" for i in range(N_ITEMS)]
    version = save_artifact(root, codewords, encoder, ids, codes, {})
    calibration = save_calibration(
        root, codebook_version=version, item_ids=np.array(ids),
        item_features=rng.random((N_ITEMS, 2)), prefix_features=rng.random((256, 2)),
        mf_items=rng.normal(size=(N_ITEMS, FACTORS + 1)),
        full=LogisticModel(rng.normal(size=6), 0.0, np.zeros(6), np.ones(6)),
        items_only=LogisticModel(rng.normal(size=2), 0.0, np.zeros(2), np.ones(2)),
        meta={"fitted": "benchmark"},
    )  # fmt: skip
    store = PredictionStore(connect(redis_url), prefix="bench")
    width = len(user_layout(FACTORS))
    writer = store.begin_run("r1", codebook_version=version, model_version="m", k=K,
                             user_features=width, calibration_version=calibration)  # fmt: skip
    batch = 10_000
    for start in range(0, N_USERS, batch):
        users = [f"user-{u}" for u in range(start, start + batch)]
        writer.write_batch(users, codes[rng.integers(0, N_ITEMS, size=(batch, K))],
                           rng.normal(size=(batch, width)).astype(np.float32))  # fmt: skip
    writer.publish()
    picked = rng.choice(N_ITEMS, size=N_CANDIDATES, replace=False)
    kinds = {
        "ids": [{"item_id": ids[i]} for i in picked],
        "sids": [{"item_id": ids[i], "sid": codes[i].tolist()} for i in picked],
        "mixed": [
            {"item_id": ids[i], **({"sid": codes[i].tolist()} if j % 2 else {})}
            for j, i in enumerate(picked)
        ],
    }
    templates = {
        kind: json.dumps({"user_id": USER, "surface": SURFACE, "candidates": cands}).encode()
        for kind, cands in kinds.items()
    }
    # The same bodies on the surface serving the calibrated score.
    for kind, cands in kinds.items():
        body = {"user_id": USER, "surface": CALIBRATED_SURFACE, "candidates": cands}
        templates[f"{kind}:calibrated"] = json.dumps(body).encode()
    return templates


def serve_filter(
    port: int,
    codebook_dir: str,
    redis_url: str,
    thresholds_file: str,
    without: str = "",
    cache: bool = True,
) -> None:
    """The service as deployed; ``cache`` False: its run cache off (every request reads Redis)."""
    if without:
        take_out(without)
    settings = Settings(
        codebook_dir=codebook_dir,
        redis_url=redis_url,
        store_prefix="bench",
        port=port,
        thresholds_file=thresholds_file,
        **({} if cache else {"prediction_cache_entries": 0}),
    )
    service_main.serve(create_app(settings), settings)


# Parts of /filter's own work that the attribution run takes out, one server each.
WITHOUT = {
    "redis": "no Redis read (one prediction, read once, for every request)",
    "scoring": "no item-id lookup or scoring (every candidate scores 0)",
    "both": "neither",
}


def take_out(part: str) -> None:
    """Replace a part of /filter's work in this server process: attribution runs only."""
    from conrec.codebook.artifact import ItemSIDTable
    from conrec.service import filtering

    if part in ("redis", "both"):
        fetch, first = filtering.fetch_prediction, {}

        async def fetch_once(state, user_id: str):
            if "answer" not in first:
                first["answer"] = await fetch(state, user_id)
            return first["answer"]

        filtering.fetch_prediction = fetch_once
    if part in ("scoring", "both"):
        ItemSIDTable.rows_of = lambda self, ids: np.arange(len(ids))
        filtering.Resolved.scores = lambda self, _: np.zeros(self.scored, np.float32)


class BareCandidate(msgspec.Struct):
    item_id: str
    sid: list[int] | None = None


class BareBody(msgspec.Struct):
    user_id: str
    candidates: list[BareCandidate]


def bare_app():
    """The reference: read the body, decode it with msgspec, answer the candidate ids."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    decode, encode = msgspec.json.Decoder(BareBody).decode, msgspec.json.Encoder().encode

    async def bare(request: Request) -> Response:
        body = decode(await request.body())
        ids = [c.item_id for c in body.candidates]
        return Response(encode({"kept": ids}), media_type="application/json")

    async def ready(_: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    return Starlette(routes=[Route("/bare", bare, methods=["POST"]), Route("/readyz", ready)])


def serve_bare(port: int, freeze: bool = False) -> None:
    """Serve ``bare_app``. ``freeze``: tune the garbage collector as the service does
    (``conrec.service.main.tune_collector``: startup objects frozen, rare young collections), so
    that the bare app's own collections do not stall it; the latency floor is measured on such a
    server."""
    import uvicorn

    app = bare_app()
    if freeze:
        service_main.tune_collector()
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


@contextlib.contextmanager
def started(code: str, port: int) -> Iterator[subprocess.Popen]:
    """A server process running ``code``, ready on ``port``; stopped on the way out."""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            assert proc.poll() is None, "benchmark server exited"
            assert time.monotonic() < deadline, "benchmark server did not start"
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def wrk_rps(url: str, body_file: Path, script: Path, traffic: Traffic, seconds: int) -> float:
    start, count = traffic.next_slice()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(script), url,
         "--", str(body_file), str(traffic.path), str(start), str(count)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert non2xx is None, out
    return float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))


async def latencies_at(
    port: int,
    template: bytes,
    users: np.ndarray,
    rate: float,
    seconds: float,
    path: bytes = b"/filter",
) -> np.ndarray:
    """Open loop at a fixed rate, the i-th request for ``users[i]``; latency counts from each
    request's scheduled start."""
    loop = asyncio.get_running_loop()
    head, tail = template.split(USER.encode())
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(32):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    out: list[float] = []
    started = loop.time() + 0.05

    async def one(i: int) -> None:
        scheduled = started + i / rate
        await asyncio.sleep(scheduled - loop.time())
        body = b"%suser-%d%s" % (head, users[i % len(users)], tail)
        reader, writer = await pool.get()
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path, len(body), body)
        )
        head_ = await reader.readuntil(b"\r\n\r\n")
        if head_[9:12] != b"200":
            raise RuntimeError(f"status {head_[9:12].decode()}")
        await reader.readexactly(int(_LENGTH.search(head_).group(1)))
        pool.put_nowait((reader, writer))
        out.append(loop.time() - scheduled)

    await asyncio.gather(*(one(i) for i in range(int(rate * seconds))))
    return np.array(out)


def write_inputs(tmp_path: Path, redis_url: str) -> tuple[dict, dict, Path, Path]:
    """The world in Redis and on disk: body templates, body files, wrk script, thresholds."""
    templates = build_world(tmp_path / "codebook", redis_url)
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text(THRESHOLDS)
    script = tmp_path / "users.lua"
    script.write_text(WRK_SCRIPT)
    files = {}
    for kind, body in templates.items():
        files[kind] = tmp_path / f"{kind}.json"
        files[kind].write_bytes(body)
    return templates, files, script, thresholds


def write_traffic(tmp_path: Path, name: str, users: np.ndarray) -> Traffic:
    path = tmp_path / f"{name}.users"
    path.write_text("\n".join(map(str, users.tolist())) + "\n")
    return Traffic(path, len(users))


def traffic_shapes(tmp_path: Path) -> tuple[Traffic, Traffic, np.ndarray]:
    """The uniform rotation, the Zipf draws (a file each, for wrk) and the Zipf draws."""
    zipf = zipf_users(N_USERS, ZIPF_DRAWS, ZIPF_S)
    uniform = write_traffic(tmp_path, "uniform", np.arange(UNIFORM_USERS))
    return uniform, write_traffic(tmp_path, "zipf", zipf), zipf


def filter_server(
    port: int,
    tmp_path: Path,
    redis_url: str,
    thresholds: Path,
    without: str = "",
    cache: bool = True,
):
    code = (
        "from tests.benchmarks.test_filter_throughput import serve_filter; "
        f"serve_filter({port}, {str(tmp_path / 'codebook')!r}, {redis_url!r}, "
        f"{str(thresholds)!r}, {without!r}, {cache!r})"
    )
    return started(code, port)


def bare_server(port: int, freeze: bool = False):
    return started(
        "from tests.benchmarks.test_filter_throughput import serve_bare; "
        f"serve_bare({port}, {freeze})",
        port,
    )


def cache_lookups(port: int) -> tuple[float, float]:
    """The service's run cache hits and misses so far."""
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    name = "conrec_prediction_cache_lookups_total"
    return scraped(metrics, name, result="hit"), scraped(metrics, name, result="miss")


# Measured per body, in this order in every round: (what, server, traffic). "calibrated": the
# zipf series with the same body on a `score: calibrated` surface, for the bodies that have one.
SERIES = ("bare", "tuned", "uniform", "zipf", "cold", "calibrated")


def test_filter_throughput_vs_bare(tmp_path: Path) -> None:
    with private_redis(tmp_path) as (_, redis_url):
        templates, files, script, thresholds = write_inputs(tmp_path, redis_url)
        uniform, zipf, zipf_draws = traffic_shapes(tmp_path)
        ports = {name: free_port() for name in ("filter", "cold", "bare", "tuned")}
        url = {name: f"http://127.0.0.1:{port}/filter" for name, port in ports.items()}
        url["bare"] = f"http://127.0.0.1:{ports['bare']}/bare"
        url["tuned"] = f"http://127.0.0.1:{ports['tuned']}/bare"
        # (url, traffic) of each series.
        plan = {
            "bare": (url["bare"], uniform),
            "tuned": (url["tuned"], uniform),
            "uniform": (url["filter"], uniform),
            "zipf": (url["filter"], zipf),
            "cold": (url["cold"], zipf),
            "calibrated": (url["filter"], zipf),
        }
        with (
            filter_server(ports["filter"], tmp_path, redis_url, thresholds) as cached_server,
            filter_server(ports["cold"], tmp_path, redis_url, thresholds, cache=False) as cold,
            bare_server(ports["bare"]),
            bare_server(ports["tuned"], freeze=True),
        ):
            for kind, body in templates.items():
                answer = httpx.post(url["filter"], content=body.replace(b"__USER__", b"user-7"))
                answer = answer.json()
                surface = CALIBRATED_SURFACE if kind.endswith(":calibrated") else SURFACE
                assert answer["fail_open"] is False, answer
                assert (answer["surface"], answer["mode"]) == (surface, "enforce"), answer
                assert not answer["unscored"], answer
            results, hit_ratio = {}, {}
            for kind in BODIES:
                body_of = {series: files[kind] for series in SERIES}
                body_of["calibrated"] = files.get(f"{kind}:calibrated")
                measured = [series for series in SERIES if body_of[series] is not None]
                for series in measured:
                    target, traffic = plan[series]
                    wrk_rps(target, body_of[series], script, traffic, 1)  # warm-up
                runs: dict[str, list[float]] = {series: [] for series in measured}
                for _ in range(ROUNDS):  # interleaved: the machine is shared and noisy
                    for series in measured:
                        if series == "zipf":
                            before = cache_lookups(ports["filter"])
                        target, traffic = plan[series]
                        runs[series].append(
                            wrk_rps(target, body_of[series], script, traffic, ROUND_SECONDS)
                        )
                        if series == "zipf":
                            hits, misses = np.subtract(cache_lookups(ports["filter"]), before)
                            hit_ratio.setdefault(kind, []).append((hits, misses))
                rate = float(np.median(runs["zipf"])) / 2
                # The generator's own garbage collections would count as server stalls.
                gc.disable()
                try:
                    users = zipf_draws[zipf.at :]
                    lat = asyncio.run(
                        latencies_at(ports["filter"], templates[kind], users, rate, LATENCY_SECONDS)
                    )
                    floor_lat = asyncio.run(
                        latencies_at(ports["tuned"], templates[kind], users, rate,
                                     LATENCY_SECONDS, b"/bare")
                    )  # fmt: skip
                finally:
                    gc.enable()
                zipf.at += int(rate * LATENCY_SECONDS)
                peaks = {series: max(rps) for series, rps in runs.items()}
                results[kind] = (peaks, rate, lat, floor_lat)
            rss_mb = [psutil.Process(server.pid).memory_info().rss / 2**20
                      for server in (cached_server, cold)]  # fmt: skip
            cached_bytes = scraped(
                httpx.get(f"http://127.0.0.1:{ports['filter']}/metrics").text,
                "conrec_prediction_cache_bytes",
            )

    hits = {kind: np.sum(counts, axis=0) for kind, counts in hit_ratio.items()}
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    print(
        f"\n{N_CANDIDATES} candidates, {N_USERS:,} users with predictions; wrk -t1 "
        f"-c{CONNECTIONS}, best of {ROUNDS} x {ROUND_SECONDS} s. Traffic: uniform = the first "
        f"{UNIFORM_USERS:,} users in turn; zipf = Zipf (s = {ZIPF_S}) over all users, run cache "
        f"at its default capacity ({defaults['prediction_cache_entries']:,} entries, "
        f"{defaults['prediction_cache_bytes'] // 2**20} MiB); cold = the same draws, run cache "
        "off. 'tuned': the bare endpoint with the collector tuned as the service's. Latency: open "
        "loop at half the median zipf peak, on /filter (zipf) and on the tuned bare endpoint "
        "(the floor) at that same rate."
    )
    print("body   bytes   bare req/s  tuned req/s  uniform req/s  zipf req/s  cold req/s  "
          "calibrated req/s  uniform  zipf  cold  zipf hits  rate  p99 ms  "
          "floor p99 ms")  # fmt: skip
    for kind, (peaks, rate, lat, floor_lat) in results.items():
        bare = peaks["bare"]
        hit, miss = hits[kind]
        print(f"{kind:6} {len(templates[kind]):6}  {bare:10.0f}  {peaks['tuned']:11.0f}  "
              f"{peaks['uniform']:13.0f}  {peaks['zipf']:10.0f}  {peaks['cold']:10.0f}  "
              f"{peaks.get('calibrated', float('nan')):16.0f}  "
              f"{peaks['uniform'] / bare:7.2f}  {peaks['zipf'] / bare:4.2f}  "
              f"{peaks['cold'] / bare:4.2f}  {hit / (hit + miss):9.3f}  {rate:4.0f}  "
              f"{np.percentile(lat * 1e3, 99):6.2f}  "
              f"{np.percentile(floor_lat * 1e3, 99):12.2f}")  # fmt: skip
    names = {"sids": "filter", "ids": "filter_ids", "mixed": "filter_mixed"}
    over = []
    for kind, (peaks, _, lat, floor_lat) in results.items():
        name, bare = names[kind], peaks["bare"]
        p99, floor99 = np.percentile(lat * 1e3, 99), np.percentile(floor_lat * 1e3, 99)
        over.append(p99 - floor99)
        print(f"{name}_vs_bare_ratio: {peaks['uniform'] / bare:.2f}")
        print(f"{name}_vs_tuned_bare_ratio: {peaks['uniform'] / peaks['tuned']:.2f}")
        print(f"{name.replace('filter', 'filter_sids') if kind == 'sids' else name}"
              f"_vs_bare_zipf: {peaks['zipf'] / bare:.2f}")  # fmt: skip
        print(f"{name.replace('filter', 'filter_sids') if kind == 'sids' else name}"
              f"_vs_bare_cold: {peaks['cold'] / bare:.2f}")  # fmt: skip
        print(f"{name}_p99_ms_at_half_peak: {p99:.2f}")
        print(f"{name}_floor_p99_ms_at_same_rate: {floor99:.2f}")
        if "calibrated" in peaks:
            # The goal's ratio: (calibrated / bare) / (max cosine / bare), the same traffic.
            print(f"filter_{kind}_calibrated_vs_max_cosine_zipf: "
                  f"{peaks['calibrated'] / peaks['zipf']:.2f}")  # fmt: skip
    hit, miss = np.sum(list(hits.values()), axis=0)
    print(f"run cache at the end: {cached_bytes / 2**20:.0f} MiB counted; resident: service "
          f"{rss_mb[0]:.0f} MB, the same with its cache off {rss_mb[1]:.0f} MB")  # fmt: skip
    print(f"filter_cache_hit_ratio_zipf: {hit / (hit + miss):.3f}")
    print(f"filter_p99_over_floor_ms: {max(over):.2f}")
    assert all(peaks["zipf"] > 0 and peaks["cold"] > 0 for peaks, *_ in results.values())
    assert hit > 0


def test_filter_time_attribution(tmp_path: Path) -> None:
    """Where an id-only request's time goes under load: /filter with its run cache off (every
    request reads Redis) on the Zipf traffic, and with parts of its own work taken out
    (``WITHOUT``), each against the same bare endpoint, interleaved."""
    with private_redis(tmp_path) as (_, redis_url):
        _, files, script, thresholds = write_inputs(tmp_path, redis_url)
        _, zipf, _ = traffic_shapes(tmp_path)
        ports = {part: free_port() for part in ("", *WITHOUT)}
        bport = free_port()
        with contextlib.ExitStack() as stack:
            for part, port in ports.items():
                server = filter_server(port, tmp_path, redis_url, thresholds, part, cache=False)
                stack.enter_context(server)
            stack.enter_context(bare_server(bport))
            urls = {part: f"http://127.0.0.1:{port}/filter" for part, port in ports.items()}
            burl = f"http://127.0.0.1:{bport}/bare"
            for url in (*urls.values(), burl):
                wrk_rps(url, files["ids"], script, zipf, 1)  # warm-up
            runs: dict[str, list[float]] = {part: [] for part in (*urls, "bare")}
            for _ in range(ROUNDS):
                runs["bare"].append(wrk_rps(burl, files["ids"], script, zipf, ROUND_SECONDS))
                for part, url in urls.items():
                    runs[part].append(wrk_rps(url, files["ids"], script, zipf, ROUND_SECONDS))
    bare = max(runs.pop("bare"))
    print(f"\nid-only bodies, {N_CANDIDATES} candidates; bare endpoint {bare:.0f} req/s")
    print("/filter                                                       req/s  vs bare")
    for part, rps in runs.items():
        label = WITHOUT.get(part, "as served")
        print(f"{label:60} {max(rps):6.0f}  {max(rps) / bare:5.2f}")
    for part, rps in runs.items():
        name = f"without_{part}_" if part else ""
        print(f"filter_ids_{name}vs_bare_ratio: {max(rps) / bare:.2f}")
    assert all(max(rps) > 0 for rps in runs.values())
