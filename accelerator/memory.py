"""The memory hierarchy DRAM <-> global buffer (GB) <-> PE scratchpads: layer geometry, the
tiling of one layer over the global buffer, and the DRAM traffic it causes.

Operands of a layer with ``K`` filters, ``C`` input channels, a ``kh x kw`` kernel, output map
``H_o x W_o`` (``P = H_o W_o`` positions), input map ``H_i x W_i``, stride ``s`` and ``T``
timesteps (one bit per spike per timestep):

- weights ``W = nnz (b_w + b_idx)`` bits (compressed);
- input spikes ``I = C H_i W_i T`` bits;
- output spikes ``O = K P T`` bits;
- membrane potentials ``b_m`` bits per (filter, position), live while timesteps are pending.

A tile is ``K_t = ceil(K / n_K)`` filters x ``R_t = ceil(H_o / n_R)`` output rows x
``T_t = ceil(T / n_T)`` timesteps. Its input rows are ``rows_in(R_t) = min(H_i, (R_t - 1) s + kh)``
(the halo of the kernel window; stride-aware). The two loop orders searched:

``weights outer`` (``order="K"``)::

    for kb in range(n_K):            # K_t filters' weights resident in the GB
      for rb in range(n_R):          # R_t output rows; their input rows (with halo) fetched
        for tb in range(n_T):        # T_t timesteps of those input rows
          for g in PE groups of kb:  # PE level (accelerator.cost): weights -> scratchpads
            stream positions of rb x timesteps of tb
        # membranes of (K_t filters, R_t rows) stay in the GB across tb when n_T > 1

``inputs outer`` (``order="R"``)::

    for rb in range(n_R):
      for tb in range(n_T):          # input tile resident in the GB
        for kb in range(n_K):        # weights streamed per input tile unless n_K == 1
          for g in PE groups of kb: ...
      # membranes of (all K filters, R_t rows) stay in the GB across tb when n_T > 1

GB footprint of a tile (bits): weights ``W K_t / K`` + inputs ``C rows_in(R_t) W_i T_t`` + outputs
``K_t R_t W_o T_t`` + membranes (``K_t`` resp. ``K`` filters x ``R_t W_o`` x ``b_m``, when
``n_T > 1``). Partial sums spilled by the PE level (:func:`accelerator.equations.pe_traffic`)
pass through the GB as traffic but are not part of the footprint. DRAM traffic:

- order K: ``W + I_tiles * (n_K if n_R n_T > 1 else 1) + O``;
- order R: ``W * (n_R n_T if n_K > 1 else 1) + I_tiles + O``;

with ``I_tiles = C n_R rows_in(R_t) W_i T`` (halo rows are fetched again per row tile). The
chosen tiling minimizes DRAM traffic over the tiles whose footprint fits the GB (ties: the
fewest tiles). ``n_K, n_R, n_T`` run over powers of two (and the full extent). When no tile
fits, the operands overflow the buffer: the model then charges the largest traffic among the
candidates (``fits=False``), so DRAM traffic never increases with the buffer size. Every layer
reads its input from DRAM and writes its output to DRAM once at least (layer-by-layer execution;
fusing layers on chip is not modelled).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from accelerator.profile import LayerProfile


@dataclass(frozen=True)
class Geometry:
    """Shapes of one layer (linear layers: ``1 x 1`` maps, ``1 x 1`` kernel, stride 1)."""

    filters: int
    channels: int
    kh: int
    kw: int
    h_out: int
    w_out: int
    h_in: int
    w_in: int
    stride: int
    padding: int

    @property
    def input_positions(self) -> int:
        """Input neurons per channel, ``H_i W_i`` (what a stride-aware input read touches)."""
        return self.h_in * self.w_in


@lru_cache(maxsize=4096)
def _square(positions: int) -> tuple[int, int]:
    """The most square ``(h, w)`` with ``h * w = positions`` and ``h <= w``."""
    h = int(np.sqrt(positions))
    while positions % h:
        h -= 1
    return h, positions // h


def geometry(shape: tuple[int, ...], lp: LayerProfile) -> Geometry:
    """Geometry of a layer from its weight shape and profile.

    Without recorded geometry (the masks-only path) a conv layer has stride 1, 'same' padding
    ``(k - 1) // 2`` and an input map equal to its output map; the output map is the most square
    factorisation of ``positions``. A recorded ``input_size`` overrides the input map.
    """
    k, c = shape[0], shape[1]
    kh, kw = (shape[2], shape[3]) if len(shape) == 4 else (1, 1)
    h_out, w_out = lp.output_size if lp.output_size is not None else _square(lp.positions)
    s = lp.stride
    if lp.input_size is not None:
        h_in, w_in = lp.input_size
    else:
        h_in, w_in = h_out * s, w_out * s
    pad = lp.padding if lp.padding is not None else (kh - 1) // 2
    return Geometry(k, c, kh, kw, h_out, w_out, h_in, w_in, s, pad)


@dataclass(frozen=True)
class Tiling:
    """The chosen GB tiling of one layer and its DRAM traffic (bits)."""

    order: str
    filter_blocks: int
    row_blocks: int
    time_blocks: int
    fits: bool
    footprint_bits: float
    dram_weight_bits: float
    dram_input_bits: float
    dram_output_bits: float

    @property
    def dram_read_bits(self) -> float:
        return self.dram_weight_bits + self.dram_input_bits

    @property
    def dram_bits(self) -> float:
        return self.dram_read_bits + self.dram_output_bits


def _powers(n: int) -> np.ndarray:
    """Block counts tried for an extent ``n``: 1, 2, 4, ... below ``n``, and ``n``."""
    out = [1 << i for i in range(max(n, 1).bit_length()) if (1 << i) < n]
    return np.array([*out, n], dtype=np.float64)


@lru_cache(maxsize=65536)
def choose_tiling(
    geo: Geometry, timesteps: int, weight_bits: float, membrane_bits: int, capacity_bits: float
) -> Tiling:
    """The DRAM-traffic-minimizing tiling of one layer for a GB of ``capacity_bits`` (module
    docstring); vectorized over all candidates ``(order, n_K, n_R, n_T)``. Ties go to
    the fewest tiles, then to the weights-outer order."""
    n_k = _powers(geo.filters)[:, None, None]
    n_r = _powers(geo.h_out)[None, :, None]
    n_t = _powers(timesteps)[None, None, :]
    k_t = np.ceil(geo.filters / n_k)
    r_t = np.ceil(geo.h_out / n_r)
    t_t = np.ceil(timesteps / n_t)
    rows_in = np.minimum(geo.h_in, (r_t - 1) * geo.stride + geo.kh)
    inputs_tile = geo.channels * rows_in * geo.w_in
    i_tiles = inputs_tile * n_r * timesteps
    w_tile = weight_bits * k_t / geo.filters
    o_tile = k_t * r_t * geo.w_out * t_t
    split_t = n_t > 1
    base = w_tile + inputs_tile * t_t + o_tile
    foot_k = base + np.where(split_t, k_t * r_t * geo.w_out * membrane_bits, 0.0)
    foot_r = base + np.where(split_t, geo.filters * r_t * geo.w_out * membrane_bits, 0.0)
    refetch_i = np.where(n_r * n_t > 1, n_k, 1.0)
    refetch_w = np.where(n_k > 1, n_r * n_t, 1.0)
    shape = np.broadcast_shapes(n_k.shape, n_r.shape, n_t.shape)

    def both(k_order: np.ndarray | float, r_order: np.ndarray | float) -> np.ndarray:
        return np.stack([np.broadcast_to(k_order, shape), np.broadcast_to(r_order, shape)])

    w_dram = both(weight_bits, weight_bits * refetch_w)
    i_dram = both(i_tiles * refetch_i, i_tiles)
    foot = both(foot_k, foot_r)
    traffic = w_dram + i_dram
    ok = foot <= capacity_bits
    fits = bool(ok.any())
    tiles = np.broadcast_to(n_k * n_r * n_t, foot.shape).reshape(-1)
    if fits:
        key = np.where(ok, traffic, np.inf).reshape(-1)
        best = np.flatnonzero(key == key.min())
        flat = int(best[np.argmin(tiles[best])])
    else:
        flat = int(np.argmax(traffic.reshape(-1)))
    o, a, b, c = np.unravel_index(flat, foot.shape)
    return Tiling(
        order="KR"[int(o)],
        filter_blocks=int(n_k[a, 0, 0]),
        row_blocks=int(n_r[0, b, 0]),
        time_blocks=int(n_t[0, 0, c]),
        fits=fits,
        footprint_bits=float(foot[o, a, b, c]),
        dram_weight_bits=float(w_dram[o, a, b, c]),
        dram_input_bits=float(i_dram[o, a, b, c]),
        dram_output_bits=float(geo.filters * geo.h_out * geo.w_out * timesteps),
    )
