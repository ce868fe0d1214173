"""Ticket cache: checksums catch damaged files; concurrent writers leave one valid entry."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np

from dse.cache import TicketCache
from snn.ticket import RoundInfo


def rounds(n: int, seed: int = 0) -> list[RoundInfo]:
    rng = np.random.default_rng(seed)

    def masks() -> dict[str, np.ndarray]:
        return {"conv": rng.random((8, 4, 3, 3)) < 0.5, "fc": rng.random((10, 32)) < 0.5}

    return [
        RoundInfo(
            round=r,
            masks=masks(),
            pre_balance_masks=masks(),
            sparsity=0.5,
            accuracy=0.9,
            val_accuracy=0.8,
            profile={"layers": {}},
            train_loss=[0.5, 0.25],
            train_seconds=1.0,
            balance_seconds=0.0,
            eval_seconds=0.1,
            orders={"conv": {"filters": [1, 0]}} if r else None,
        )
        for r in range(n + 1)
    ]


def test_round_trip_and_prefix(tmp_path: Path) -> None:
    cache = TicketCache(tmp_path)
    data = rounds(3)
    cache.put_rounds("k" * 64, data)
    got = cache.get_rounds("k" * 64, 3)
    assert got is not None and len(got) == 4
    for a, b in zip(got, data, strict=True):
        for name in a.masks:
            assert (a.masks[name] == b.masks[name]).all()
            assert (a.pre_balance_masks[name] == b.pre_balance_masks[name]).all()
        assert (a.round, a.accuracy, a.profile, a.orders) == (
            b.round,
            b.accuracy,
            b.profile,
            b.orders,
        )
        assert a.train_loss == b.train_loss
    assert len(cache.get_rounds("k" * 64, 1) or []) == 2  # a shorter schedule is a prefix
    assert cache.get_rounds("k" * 64, 5) is None
    cache.put_rounds("k" * 64, rounds(1, seed=9))  # never replaced by a shorter entry
    assert len(cache.get_rounds("k" * 64, 3) or []) == 4


def test_corrupt_and_truncated_files_are_detected_and_removed(tmp_path: Path) -> None:
    cache = TicketCache(tmp_path)
    key = "a" * 64
    for damage in ("flip", "truncate", "garbage"):
        cache.put_rounds(key, rounds(2))
        path = next(tmp_path.rglob(f"{key}.pt"))
        blob = bytearray(path.read_bytes())
        if damage == "flip":
            blob[-10] ^= 0xFF
        elif damage == "truncate":
            blob = blob[: len(blob) // 2]
        else:
            blob = bytearray(b"not a cache file")
        path.write_bytes(bytes(blob))
        assert cache.get_rounds(key, 2) is None
        assert not path.exists()
    assert cache.corrupt_detected == 3


def _writer(root: str, seed: int) -> None:
    cache = TicketCache(root)
    for _ in range(5):
        cache._write("b" * 64, {"rounds": [], "writer": seed, "blob": "x" * 200_000})


def test_concurrent_writers_leave_one_valid_entry(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s)) for s in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = TicketCache(tmp_path)
    entry = cache._read("b" * 64)
    assert entry is not None and entry["writer"] in range(4)
    assert list(tmp_path.rglob("*.tmp")) == []
