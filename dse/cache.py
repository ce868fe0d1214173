"""Ticket cache: content-addressed, checksummed files shared by every worker (and node).

Training is the expensive part of a trial, and most trials repeat someone else's training:

- the *dense* round and its rewind point depend only on model, data, training and seed: one
  entry serves every trial of that setting;
- a plain LTH ticket does not depend on the hardware: one entry per pruning schedule serves
  every PE array and dataflow;
- a u-Ticket ticket depends on the PE partition of every layer (the ``pe_index`` tables), not on
  the array's name or size: arrays that partition the network the same way, up to an
  order-preserving renumbering of PEs and groups (:func:`partition_digest`), share an entry.

Entries hold every round, so a schedule of R rounds is served by any entry with >= R rounds of
the same rate/scope/balancing. Files are written to a temporary name and renamed (atomic on
POSIX, also on a shared NFS directory), so concurrent writers of the same key leave one valid
entry. Each file starts with a magic tag and the SHA-256 of its payload; a truncated or corrupted
file is detected, deleted and rebuilt, never loaded. Payloads are loaded with
``torch.load(weights_only=True)``: tensors and plain containers only, no pickled code.
"""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dse.design import DesignPoint
from dse.files import atomic_write, file_lock
from snn.ticket import DenseRun, RoundInfo

MAGIC = b"DSECACHE1\n"
FORMAT = 2  # 2: rounds stored as snn.ticket.RoundInfo
EXECUTION_ONLY = ("num_threads", "device")
"""Training settings that change where a ticket is computed, not what it is."""


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def dense_key(point: DesignPoint) -> str:
    """What the dense round depends on: model, data, training, seed and rewind point."""
    d = point.to_dict()
    train = {k: v for k, v in d["train"].items() if k not in EXECUTION_ONLY}
    return _digest(
        {
            "kind": "dense",
            "format": FORMAT,
            "model": d["model"],
            "data": d["data"],
            "train": train,
            "seed": d["seed"],
            "rewind_epoch": point.pruning.rewind_epoch,
        }
    )


def partition_digest(pe_index: dict[str, np.ndarray], n_pe: int) -> str:
    """Hash of the PE partition of every layer: which weights share a PE, and which PEs share a
    group, with PEs and groups renumbered ``0, 1, ...`` in their order and empty PEs dropped.

    :func:`snn.uticket.balance` draws its random choices PE by PE in the order of the PE
    numbers and ignores PEs that hold no weight, so two maps with the same renumbered
    partition (e.g. a 32-filter layer on 32 or on 64 PEs of the K dataflow) get bit-identical
    masks and are one ticket (tested). Broadcast views are read cheaply.
    """
    h = hashlib.sha256()
    for name, idx in pe_index.items():
        sl = tuple(
            slice(0, 1) if s == 0 and n > 1 else slice(None)
            for s, n in zip(idx.strides, idx.shape, strict=True)
        )
        compact = np.ascontiguousarray(idx[sl], dtype=np.int64)
        _, group_rank = np.unique(compact // n_pe, return_inverse=True)
        pairs, pair_rank = np.unique(compact, return_inverse=True)
        pair_group = pairs // n_pe
        first = np.r_[0, np.flatnonzero(np.diff(pair_group)) + 1]
        pe_rank = np.arange(pairs.size) - np.repeat(first, np.diff(np.r_[first, pairs.size]))
        h.update(name.encode())
        h.update(repr(idx.shape).encode())
        h.update(np.ascontiguousarray(group_rank.reshape(compact.shape), np.int64).tobytes())
        h.update(
            np.ascontiguousarray(pe_rank[pair_rank].reshape(compact.shape), np.int64).tobytes()
        )
    return h.hexdigest()


def ticket_key(point: DesignPoint, pe_index: dict[str, np.ndarray], n_pe: int) -> str:
    """What a ticket depends on besides the number of rounds (hardware only for u-Ticket)."""
    pruning = point.pruning.model_dump(mode="json")
    pruning.pop("rounds")
    key: dict[str, Any] = {"kind": "ticket", "dense": dense_key(point), "pruning": pruning}
    if point.pruning.balance == "uticket":
        key["partition"] = partition_digest(pe_index, n_pe)
        if point.accelerator.mapping_order != "fixed":  # the map then depends on the masks
            key["mapping_order"] = point.accelerator.mapping_order
    return _digest(key)


class TicketCache:
    """A directory of cache entries; safe for concurrent readers and writers."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.corrupt_detected = 0

    def lock(self, key: str) -> AbstractContextManager[None]:
        """Hold an exclusive lock on ``key`` while computing it, so that a concurrent worker
        that needs the same entry waits and then reads it instead of training it twice."""
        return file_lock(self.root / key[:2] / f".{key}.lock")

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    def _write(self, key: str, payload: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, MAGIC + hashlib.sha256(data).digest() + data)

    def _read(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        head = len(MAGIC)
        ok = blob[:head] == MAGIC and len(blob) > head + 32
        data = blob[head + 32 :]
        if not ok or hashlib.sha256(data).digest() != blob[head : head + 32]:
            self.corrupt_detected += 1
            path.unlink(missing_ok=True)
            return None
        loaded: dict[str, Any] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return loaded

    def get_dense(self, key: str) -> DenseRun | None:
        """The cached dense round, or ``None``."""
        payload = self._read(key)
        return None if payload is None else DenseRun(**payload)

    def put_dense(self, key: str, dense: DenseRun) -> None:
        self._write(key, asdict(dense))

    def get_rounds(self, key: str, rounds: int) -> list[RoundInfo] | None:
        """The first ``rounds + 1`` cached rounds (dense round first), or ``None``."""
        payload = self._read(key)
        if payload is None or len(payload["rounds"]) < rounds + 1:
            return None
        return [_unpack_round(r) for r in payload["rounds"][: rounds + 1]]

    def put_rounds(self, key: str, rounds: list[RoundInfo]) -> None:
        """Store rounds unless a longer entry is already there."""
        existing = self._read(key)
        if existing is not None and len(existing["rounds"]) >= len(rounds):
            return
        self._write(key, {"rounds": [_pack_round(r) for r in rounds]})


def _pack_masks(masks: dict[str, np.ndarray]) -> dict[str, Any]:
    return {
        name: {"bits": torch.from_numpy(np.packbits(m.reshape(-1))), "shape": list(m.shape)}
        for name, m in masks.items()
    }


def _unpack_masks(packed: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for name, p in packed.items():
        shape = tuple(int(s) for s in p["shape"])
        n = int(np.prod(shape))
        out[name] = np.unpackbits(p["bits"].numpy(), count=n).astype(bool).reshape(shape)
    return out


def _pack_round(r: RoundInfo) -> dict[str, Any]:
    """A :class:`RoundInfo` as tensors and plain containers (masks as bits, JSON strings)."""
    d = asdict(r)
    d["masks"] = _pack_masks(r.masks)
    d["pre_balance_masks"] = _pack_masks(r.pre_balance_masks)
    d["profile"] = json.dumps(r.profile)
    d["orders"] = json.dumps(r.orders)
    return d


def _unpack_round(d: dict[str, Any]) -> RoundInfo:
    return RoundInfo(
        **{
            **d,
            "masks": _unpack_masks(d["masks"]),
            "pre_balance_masks": _unpack_masks(d["pre_balance_masks"]),
            "profile": json.loads(d["profile"]),
            "orders": json.loads(d["orders"]),
        }
    )
