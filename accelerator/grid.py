"""Whole-grid scoring: every combination of hardware field values for one pruned network.

:func:`evaluate_grid` scores the Cartesian product of ``grid`` (dotted field -> values). Rows that
share the mapping and PE resources (the *structural* fields: dataflow, array shape, tick batching,
accumulators, scratchpad, bit widths, mapping order) share one phase-1 count
(:func:`accelerator.cost.network_work`); the GB tilings are computed once per buffer size and
layer; the remaining fields (:data:`accelerator.equations.BROADCAST_FIELDS`: clock, bandwidths,
buffer size, per-action energies, logic area, LIF units) are broadcast with numpy through the
same equations :func:`accelerator.evaluate` uses, so every row equals ``evaluate`` on that
configuration alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from accelerator.config import AcceleratorConfig, Dataflow, PEArray, accelerator_fields
from accelerator.cost import NetworkWork, network_work, params_of, score
from accelerator.counts import MaskSummary, summarize
from accelerator.equations import BROADCAST_FIELDS
from accelerator.files import ConfigError, validation_error
from accelerator.profile import Profile, parse_profile
from accelerator.report import ENERGY_PARTS

MAX_GRID_ROWS = 10_000_000
"""Largest grid scored at once (rows): about 2 GB of result columns."""


def _field_value(config: AcceleratorConfig, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node.value if hasattr(node, "value") else node


def check_grid(
    base: AcceleratorConfig, grid: Mapping[str, Sequence[Any]], source: str | Path = "<grid>"
) -> dict[str, list[Any]]:
    """Validate ``grid`` against ``base``; return its values as the schema normalizes them.

    Raises :class:`ConfigError` naming ``source`` and the field: unknown fields, empty or
    non-list values, values the schema rejects, grids over :data:`MAX_GRID_ROWS` rows.
    """
    known = set(accelerator_fields())
    out: dict[str, list[Any]] = {}
    for dotted, values in grid.items():
        if dotted not in known or dotted == "name":
            raise ConfigError(
                source, str(dotted), "unknown or unsweepable field; see accelerator_fields()"
            )
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise ConfigError(source, dotted, "expected a non-empty list of values")
        normalized = []
        for v in values:
            try:
                cfg = base.with_updates({dotted: v})
            except ValidationError as exc:
                raise validation_error(source, exc) from None
            normalized.append(_field_value(cfg, dotted))
        out[dotted] = normalized
    rows = math.prod(len(v) for v in out.values())
    if rows > MAX_GRID_ROWS:
        raise ConfigError(source, "", f"{rows} combinations; at most {MAX_GRID_ROWS} are allowed")
    return out


def _shared_work(
    config: AcceleratorConfig,
    summary: MaskSummary,
    profile: Profile | None,
    cache: dict[str, NetworkWork],
) -> NetworkWork:
    """Phase 1 of ``config``, shared by mappings that place every weight alike: under the K and C
    dataflows only ``rows * cols`` matters, so an ``r x c`` array counts as ``(r c) x 1``."""
    canonical = config
    if config.dataflow in (Dataflow.K, Dataflow.C) and config.pe_array.cols != 1:
        canonical = config.model_copy(update={"pe_array": PEArray(rows=config.n_pe, cols=1)})
    key = canonical.model_dump_json()
    if key not in cache:
        cache[key] = network_work(canonical, summary, profile)
    return cache[key]


def evaluate_grid(
    base_config: AcceleratorConfig,
    grid: Mapping[str, Sequence[Any]],
    masks_or_summary: Mapping[str, Any] | MaskSummary,
    profile: Profile | Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Score every combination of ``grid`` (dotted field -> list of values) on ``base_config``.

    One row per combination (the first field varies slowest). Columns: the grid fields,
    ``cycles``, ``seconds``, ``energy_uj``, ``energy_pj.<part>`` (compute, lif, onchip_memory,
    dram, leakage, total), ``area_mm2``, ``utilization``, ``utilization_effective``,
    ``dram_bits`` and ``global_buffer_bits``. Each row equals :func:`accelerator.evaluate` of
    that configuration (same equations, broadcast).
    """
    values = check_grid(base_config, grid)
    fields = list(values)
    summary = (
        masks_or_summary
        if isinstance(masks_or_summary, MaskSummary)
        else summarize(masks_or_summary)
    )
    prof = None if profile is None else parse_profile(profile)  # type: ignore[arg-type]
    shape = tuple(len(values[f]) for f in fields)
    idx = np.indices(shape).reshape(len(fields), -1).T if fields else np.zeros((1, 0), int)
    n = idx.shape[0]
    structural = [j for j, f in enumerate(fields) if f not in BROADCAST_FIELDS]
    key: np.ndarray = np.zeros(n, dtype=np.int64)
    if structural:
        key = np.asarray(
            np.ravel_multi_index(tuple(idx[:, structural].T), tuple(shape[j] for j in structural))
        )
    order = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(key[order]) != 0])
    ends = np.r_[starts[1:], n]
    base_params = params_of(base_config)
    gb_field = "memory.global_buffer_bytes"
    gb_values = np.array(
        values[gb_field] if gb_field in values else [base_config.memory.global_buffer_bytes],
        dtype=np.float64,
    )
    out: dict[str, np.ndarray] = {
        k: np.empty(n)
        for k in (
            "cycles",
            "seconds",
            *(f"energy_pj.{p}" for p in ENERGY_PARTS),
            "area_mm2",
            "utilization",
            "utilization_effective",
            "dram_bits",
            "global_buffer_bits",
        )
    }
    works: dict[str, NetworkWork] = {}
    for a, b in zip(starts, ends, strict=True):
        rows = order[a:b]
        first = idx[rows[0]]
        cfg = base_config.with_updates({fields[j]: values[fields[j]][first[j]] for j in structural})
        nw = _shared_work(cfg, summary, prof, works)
        p: dict[str, np.ndarray] = {}
        for name in BROADCAST_FIELDS:
            if name in values:
                j = fields.index(name)
                col = np.asarray(values[name], dtype=np.float64)[idx[rows, j]]
                p[name] = col[:, None]
            else:
                p[name] = np.full((rows.size, 1), base_params[name])
        gb_index = (
            idx[rows, fields.index(gb_field)]
            if gb_field in values
            else np.zeros(rows.size, dtype=np.int64)
        )
        fig = score(nw, p, gb_index, gb_values)
        cycles = fig["cycles"].sum(axis=1)
        out["cycles"][rows] = cycles
        out["seconds"][rows] = cycles / (p["clock_mhz"][:, 0] * 1e6)
        for part in ENERGY_PARTS:
            out[f"energy_pj.{part}"][rows] = fig[f"energy.{part}"].sum(axis=1)
        out["area_mm2"][rows] = fig["area_mm2"][:, 0]
        for k, v in nw.utilizations().items():
            if k in out:
                out[k][rows] = v
        out["dram_bits"][rows] = fig["dram_bits"].sum(axis=1)
        out["global_buffer_bits"][rows] = fig["global_buffer_bits"].sum(axis=1)
    total = sum(out[f"energy_pj.{p}"] for p in ENERGY_PARTS)
    columns: dict[str, Any] = {f: np.asarray(values[f])[idx[:, j]] for j, f in enumerate(fields)}
    columns["cycles"] = out["cycles"]
    columns["seconds"] = out["seconds"]
    columns["energy_uj"] = total * 1e-6
    for part in ENERGY_PARTS:
        columns[f"energy_pj.{part}"] = out[f"energy_pj.{part}"]
    columns["energy_pj.total"] = total
    for k in (
        "area_mm2",
        "utilization",
        "utilization_effective",
        "dram_bits",
        "global_buffer_bits",
    ):
        columns[k] = out[k]
    return pd.DataFrame(columns)


def pareto_front(
    frame: pd.DataFrame, objectives: Sequence[str] = ("seconds", "energy_uj", "area_mm2")
) -> pd.DataFrame:
    """The rows of ``frame`` not dominated in ``objectives`` (all minimized), in the order of the
    first objective. A row is dominated when another is no worse in every objective and better
    in one; of identical rows the first is kept."""
    pts = frame[list(objectives)].to_numpy(dtype=np.float64)
    order = np.lexsort(pts.T[::-1])
    front: list[int] = []
    kept = np.empty((0, pts.shape[1]))
    for i in order:  # sorted: only an earlier point can dominate a later one
        x = pts[i]
        if kept.shape[0] and bool(np.any(np.all(kept <= x, axis=1))):
            continue
        front.append(int(i))
        kept = np.vstack([kept, x])
    return frame.iloc[front]
