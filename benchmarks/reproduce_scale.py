"""Tables I-III of the paper (arXiv 2302.06746) in spirit at a meaningful scale, on a CPU.

VGG-16 and ResNet-19 (``snn.models``) at a width multiplier that gives most conv layers several
filter groups on the paper's 16-PE array, trained on an embedded data set at T=4 with the
paper's pruning schedule (rate 0.25 per round; 14 rounds reach 98.2 % sparsity). Per model and
seed one dense round (with its rewind point) is shared by five tickets:

* ``LTH``: magnitude pruning only;
* ``uT-paper-K`` / ``uT-paper-C``: u-Ticket as the paper's text describes it (every conv and
  linear layer balanced, the next round prunes the balanced mask), balanced for mapping K or C;
* ``uT-authors-K`` / ``uT-authors-C``: u-Ticket as the authors' public code runs it
  (``balance_layers: authors`` + ``carry: authors``: conv layers after the first are balanced,
  the next round thresholds the pre-balance mask at the quantile of the trained non-zero |w|).

Two steps. *Training* writes every round of every ticket (packed masks, pre-balance masks,
spike profile, accuracy, timings) under ``--out`` and can be resumed (finished tickets are
skipped). *Scoring* (run after training, or alone with ``--report-only``) reads the saved
rounds, scores them with ``accelerator.evaluate`` (LTH on both mappings, each u-Ticket on the
mapping it was balanced for) and writes ``benchmarks/results/reproduce_scale.{json,md}``:
Tables I/II at matched sparsity and Table III (a trained u-Ticket ticket re-balanced for 2..64
PEs, mapping K, normalized to 2 PEs).

Run: ``python benchmarks/reproduce_scale.py`` (the paper's 14 rounds at 25 %; about 1 h of
one uncontended core for 2 models x 3 seeds) or ``--rate 0.5 --rounds 6`` (98.4 % in 6 rounds;
about 30 min). Several processes started with the same arguments share the (model, seed) jobs
(each claims one at a time), and a restarted run skips finished tickets. After a cost-model
change: ``python benchmarks/reproduce_scale.py --report-only`` (same arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS

METHODS: dict[str, dict[str, Any]] = {
    "LTH": {"balance": "none"},
    "uT-paper-K": {"balance": "uticket", "balance_layers": "all", "carry": "balanced"},
    "uT-paper-C": {"balance": "uticket", "balance_layers": "all", "carry": "balanced"},
    "uT-authors-K": {"balance": "uticket", "balance_layers": "authors", "carry": "authors"},
    "uT-authors-C": {"balance": "uticket", "balance_layers": "authors", "carry": "authors"},
}
"""Ticket name -> TicketConfig fields; a u-Ticket name ends with the mapping it balances for."""

TABLE3_PES = (2, 4, 8, 16, 32, 64)
PAPER_TABLE3 = {2: (1, 1), 4: (0.49, 1.01), 8: (0.25, 1.02), 16: (0.12, 0.95), 32: (0.06, 1.02)}
PAPER_TABLE3[64] = (0.03, 1.04)
TARGETS = (0.90, 0.95, 0.98)
"""Sparsities at which Tables I/II compare the tickets (each method's nearest round)."""


def accel_config(dataflow: str, n_pe: int = 16) -> Any:
    """The paper's 16-PE array (shipped YAML) with the given mapping and PE count."""
    from accelerator import load_accelerator

    base = load_accelerator(ROOT / "accelerator/configs/paper_16pe_k.yaml")
    return base.with_updates({"dataflow": dataflow, "pe_array.rows": n_pe, "pe_array.cols": 1})


# ---------------------------------------------------------------------------------------------
# storage of rounds


def save_round(folder: Path, info: Any) -> None:
    """One round: packed masks (+ pre-balance masks when they differ) and a JSON record."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for name, m in info.masks.items():
        arrays[f"mask/{name}"] = np.packbits(m.reshape(-1))
        if not np.array_equal(m, info.pre_balance_masks[name]):
            arrays[f"pre/{name}"] = np.packbits(info.pre_balance_masks[name].reshape(-1))
    np.savez_compressed(folder / f"round{info.round:02d}.npz", **arrays)  # type: ignore[arg-type]
    record = {
        "round": info.round,
        "sparsity": info.sparsity,
        "accuracy": info.accuracy,
        "val_accuracy": info.val_accuracy,
        "train_seconds": info.train_seconds,
        "balance_seconds": info.balance_seconds,
        "eval_seconds": info.eval_seconds,
        "shapes": {n: list(m.shape) for n, m in info.masks.items()},
        "profile": info.profile,
    }
    (folder / f"round{info.round:02d}.json").write_text(json.dumps(record))


def load_round(folder: Path, r: int) -> tuple[dict[str, Any], dict[str, np.ndarray], dict]:
    """``(record, masks, pre_balance_masks)`` of a saved round."""
    record = json.loads((folder / f"round{r:02d}.json").read_text())
    packed = np.load(folder / f"round{r:02d}.npz")
    masks, pre = {}, {}
    for name, shape in record["shapes"].items():
        n = int(np.prod(shape))
        masks[name] = np.unpackbits(packed[f"mask/{name}"], count=n).astype(bool).reshape(shape)
        key = f"pre/{name}"
        pre[name] = (
            np.unpackbits(packed[key], count=n).astype(bool).reshape(shape)
            if key in packed
            else masks[name]
        )
    return record, masks, pre


# ---------------------------------------------------------------------------------------------
# training


def claim(folder: Path) -> bool:
    """Claim one (model, seed) for this process, so that several processes can share the jobs:
    create ``claim`` (holding the pid) exclusively; a claim whose process is gone is taken over."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "claim"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text() or "0")
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError):
                path.unlink(missing_ok=True)  # stale: its process has ended
                continue
            except PermissionError:
                return False
            return pid == os.getpid()
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def train_all(args: argparse.Namespace, out: Path, log: Any) -> None:
    """Dense round + the five tickets per (seed, model), resumable; progress with ETA."""
    import torch

    torch.set_num_threads(args.threads)
    from accelerator import pe_index
    from snn.data import load_dataset
    from snn.models import ModelConfig, build_model
    from snn.ticket import DenseRun, TicketConfig, find_ticket, train_dense
    from snn.train import TrainConfig

    jobs = [(s, m) for s in args.seeds for m in args.models]
    round_cost = {m: 1.0 for m in args.models}  # seconds per retraining round, measured
    measured: dict[str, list[float]] = {m: [] for m in args.models}
    per_job = len(METHODS) * args.rounds
    left = {
        (s, m, k): args.rounds
        for s, m in jobs
        for k in METHODS
        if not (out / m / f"seed{s}" / k / "done").exists()
    }
    dense_left = {(s, m) for s, m in jobs if not (out / m / f"seed{s}" / "dense.pt").exists()}
    t_start = time.perf_counter()

    def eta() -> str:
        """Rounds left x measured seconds per round of that model (dense rounds included)."""
        every = [v for x in measured.values() for v in x]
        for m in args.models:
            if measured[m] or every:
                round_cost[m] = float(np.mean(measured[m] or every))
        rest = sum(n * round_cost[k[1]] for k, n in left.items())
        rest += sum(args.dense_epochs / args.epochs * round_cost[m] for _s, m in dense_left)
        return f"elapsed {(time.perf_counter() - t_start) / 60:.1f} min, ETA {rest / 60:.1f} min"

    log(f"{len(left)} tickets to train ({len(jobs)} model x seed, {per_job} rounds each)")
    for seed, model_name in jobs:
        if not claim(out / model_name / f"seed{seed}"):
            log(f"{model_name} seed {seed}: trained by another process, skipped")
            left = {k: v for k, v in left.items() if k[:2] != (seed, model_name)}
            dense_left.discard((seed, model_name))
            continue
        splits = load_dataset(args.dataset, seed=seed, val_fraction=0.1, test_fraction=0.2)
        model_cfg = ModelConfig(name=model_name, timesteps=args.timesteps, width=args.width)
        train_cfg = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer="adam",
            lr=args.lr,
            weight_decay=0.0,
            schedule="cosine",
            num_threads=args.threads,
        )
        folder = out / model_name / f"seed{seed}"
        dense_path = folder / "dense.pt"
        if dense_path.exists():
            dense = DenseRun.load(dense_path)
        else:
            t0 = time.perf_counter()
            dense = train_dense(
                model_cfg,
                splits,
                train_cfg.model_copy(update={"epochs": args.dense_epochs}),
                seed=seed,
                rewind_epoch=args.rewind_epoch,
            )
            dense.save(dense_path)
            dense_left.discard((seed, model_name))
            log(
                f"{model_name} seed {seed} dense: acc {100 * dense.accuracy:.1f} % "
                f"({time.perf_counter() - t0:.0f} s)"
            )
        model = build_model(model_cfg, splits.in_shape, splits.n_classes)
        shapes = {n: tuple(m.weight.shape) for n, m in model.prunable().items()}
        for method, fields in METHODS.items():
            tdir = folder / method
            if (tdir / "done").exists():
                continue
            ticket_cfg = TicketConfig(
                rounds=args.rounds,
                rate=args.rate,
                rewind_epoch=args.rewind_epoch,
                seed=seed,
                **fields,
            )
            pe, n_pe = None, None
            if fields["balance"] == "uticket":
                config = accel_config(method[-1])
                pe = {n: pe_index(s, config) for n, s in shapes.items()}
                n_pe = config.n_pe

            def on_round(info: Any, tdir: Path = tdir, method: str = method) -> None:
                save_round(tdir, info)
                if info.round == 0:
                    return
                measured[model_name].append(info.train_seconds + info.eval_seconds)
                left[(seed, model_name, method)] = args.rounds - info.round
                log(
                    f"{model_name} seed {seed} {method} round {info.round}: "
                    f"sparsity {100 * info.sparsity:.2f} % acc {100 * info.accuracy:.1f} % "
                    f"train {info.train_seconds:.1f} s balance {1e3 * info.balance_seconds:.0f} ms"
                    f" | {eta()}"
                )

            find_ticket(
                model_cfg,
                splits,
                train_cfg,
                ticket_cfg,
                pe_index=pe,
                n_pe=n_pe,
                dense=dense,
                on_round=on_round,
            )
            (tdir / "done").write_text(json.dumps(ticket_cfg.model_dump()))
            left.pop((seed, model_name, method), None)
            log(f"{model_name} seed {seed} {method} done | {eta()}")


# ---------------------------------------------------------------------------------------------
# scoring


def score_all(args: argparse.Namespace, out: Path, log: Any) -> dict[str, Any]:
    """Score every saved round; returns the rows and the Table III rows."""
    from accelerator import evaluate

    configs = {flow: accel_config(flow) for flow in ("K", "C")}
    rows: list[dict[str, Any]] = []
    t3: list[dict[str, Any]] = []
    scored: dict[str, list[int]] = {}
    for model_name in args.models:
        seeds = scored[model_name] = complete_seeds(out, model_name, args.seeds)
        log(f"{model_name}: seeds with every ticket trained: {seeds}")
        for seed in seeds:
            for method in METHODS:
                tdir = out / model_name / f"seed{seed}" / method
                flows = ("K", "C") if method == "LTH" else (method[-1],)
                for r in range(args.rounds + 1):
                    record, masks, _pre = load_round(tdir, r)
                    for flow in flows:
                        rep = evaluate(configs[flow], masks, record["profile"])
                        rows.append(
                            {
                                "model": model_name,
                                "seed": seed,
                                "method": method,
                                "dataflow": flow,
                                "round": r,
                                "accuracy": record["accuracy"],
                                "sparsity": record["sparsity"],
                                "utilization": rep.utilization,
                                "utilization_plain": rep.utilization_unweighted,
                                "utilization_authors": rep.utilization_authors,
                                "cycles": rep.cycles,
                                "compute_cycles": sum(x.compute_cycles for x in rep.layers),
                                "latency_us": rep.seconds * 1e6,
                                "energy_uj": rep.energy_pj["total"] * 1e-6,
                                "energy_pe_uj": rep.energy_pj["compute"] * 1e-6,
                                "train_seconds": record["train_seconds"],
                                "balance_seconds": record["balance_seconds"],
                            }
                        )
            t3 += table3_rows(out, model_name, seed, args.rounds)
        log(f"scored {model_name}")
    return {"scored_seeds": scored, "rows": rows, "table3": t3}


def complete_seeds(out: Path, model_name: str, seeds: list[int]) -> list[int]:
    """The seeds whose five tickets are all trained (tables compare the same seeds)."""
    return [
        s
        for s in seeds
        if all((out / model_name / f"seed{s}" / k / "done").exists() for k in METHODS)
    ]


def table3_rows(out: Path, model_name: str, seed: int, rounds: int) -> list[dict[str, Any]]:
    """Table III on the trained tickets: the final pre-balance masks of ``uT-paper-K`` (the
    trained network's pruned pattern) balanced for n PEs (mapping K) and scored with the
    ticket's spike profile; the LTH ticket scored unbalanced beside it. No retraining per n."""
    from accelerator import evaluate, pe_index
    from snn.uticket import balance

    rows = []
    sources = {"u-Ticket": out / model_name / f"seed{seed}" / "uT-paper-K", "LTH": None}
    sources["LTH"] = out / model_name / f"seed{seed}" / "LTH"
    for label, tdir in sources.items():
        if tdir is None or not (tdir / "done").exists():
            continue
        record, masks, pre = load_round(tdir, rounds)
        for n in TABLE3_PES:
            config = accel_config("K", n)
            ticket = masks
            if label == "u-Ticket":
                index = {name: pe_index(m.shape, config) for name, m in pre.items()}
                ticket = balance(pre, index, n, seed=seed)
            rep = evaluate(config, ticket, record["profile"])
            rows.append(
                {
                    "model": model_name,
                    "seed": seed,
                    "ticket": label,
                    "pe": n,
                    "sparsity": 1.0
                    - sum(int(m.sum()) for m in ticket.values())
                    / sum(m.size for m in ticket.values()),
                    "utilization": rep.utilization,
                    "cycles": rep.cycles,
                    "compute_cycles": sum(layer.compute_cycles for layer in rep.layers),
                    "energy_pj": rep.energy_pj["total"],
                    "pe_energy_pj": rep.energy_pj["compute"],
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------
# tables


def _m(sel: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([x[key] for x in sel]))


def _pm(sel: list[dict[str, Any]], key: str, scale: float = 1.0, digits: int = 1) -> str:
    v = np.array([x[key] for x in sel], dtype=float) * scale
    if len(v) > 1:
        return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"
    return f"{v.mean():.{digits}f}"


def lth_at(lth: dict[int, list[dict[str, Any]]], key: str, sparsity: float) -> float:
    """LTH's seed-mean ``key`` at ``sparsity``: linear in log density between the two LTH rounds
    around it (the rounds' own value where one matches; clamped outside their range)."""
    rounds = sorted(lth, key=lambda j: _m(lth[j], "sparsity"))
    x = [-np.log1p(-min(_m(lth[j], "sparsity"), 1 - 1e-12)) for j in rounds]
    y = [_m(lth[j], key) for j in rounds]
    return float(np.interp(-np.log1p(-min(sparsity, 1 - 1e-12)), x, y))


def matched_tables(rows: list[dict[str, Any]], model_name: str) -> str:
    """Tables I/II in spirit: per mapping and target sparsity, each method's nearest round (seed
    means) against LTH interpolated to that method's sparsity (:func:`lth_at`)."""
    out = [
        f"#### {model_name}: Tables I/II at matched sparsity (mean ± std over seeds)",
        "",
        "Latency and energy: whole accelerator; compute latency: PE-array cycles (positions x "
        "tick batches x sum of group maxima, the latency the paper's tables count); PE energy: "
        "Eq. 3. The -% columns compare with LTH at the same sparsity (interpolated in log "
        "density between the LTH rounds named in 'LTH rounds').",
        "",
        "| map | target | method | round | sparsity % | acc % | util (weighted) | util (plain) "
        "| util (authors) | latency us | energy uJ | PE energy uJ | LTH rounds | latency -% "
        "| compute latency -% | energy -% | PE energy -% |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    here = [r for r in rows if r["model"] == model_name]
    for flow in ("K", "C"):
        methods = ["LTH"] + [m for m in METHODS if m != "LTH" and m.endswith(flow)]
        by = {
            m: {
                k: sel
                for k in range(100)
                if (
                    sel := [
                        r
                        for r in here
                        if r["method"] == m and r["dataflow"] == flow and r["round"] == k
                    ]
                )
            }
            for m in methods
        }
        if not by["LTH"]:
            continue
        for target in TARGETS:
            for m in methods:
                if not by[m]:
                    continue
                k = min(by[m], key=lambda j, m=m: abs(_m(by[m][j], "sparsity") - target))
                sel = by[m][k]
                s = _m(sel, "sparsity")
                lth_rounds = sorted(by["LTH"], key=lambda j: _m(by["LTH"][j], "sparsity"))
                lo = max((j for j in lth_rounds if _m(by["LTH"][j], "sparsity") <= s), default=0)
                hi = min((j for j in lth_rounds if _m(by["LTH"][j], "sparsity") >= s), default=lo)
                n = f"{lo}" if lo == hi else f"{lo}-{hi}"

                def gain(key: str, sel: list[dict[str, Any]] = sel, s: float = s) -> str:
                    return f"{100 * (1 - _m(sel, key) / lth_at(by['LTH'], key, s)):.1f}"

                out.append(
                    f"| {flow} | {100 * target:.0f} | {m} | {k} | {_pm(sel, 'sparsity', 100, 2)} "
                    f"| {_pm(sel, 'accuracy', 100)} | {_pm(sel, 'utilization', 1, 2)} "
                    f"| {_pm(sel, 'utilization_plain', 1, 2)} "
                    f"| {_pm(sel, 'utilization_authors', 1, 2)} "
                    f"| {_pm(sel, 'latency_us', 1, 1)} | {_pm(sel, 'energy_uj', 1, 3)} "
                    f"| {_pm(sel, 'energy_pe_uj', 1, 3)} | {n} "
                    f"| {gain('latency_us')} | {gain('compute_cycles')} | {gain('energy_uj')} "
                    f"| {gain('energy_pe_uj')} |"
                )
    return "\n".join(out)


def table3(t3: list[dict[str, Any]], model_name: str) -> str:
    """Table III: latency and energy on 2..64 PEs normalized to 2 PEs (seed means)."""
    out = [
        f"#### {model_name}: Table III (mapping K, normalized to 2 PEs; mean over seeds)",
        "",
        "| PEs | uT util | uT latency | uT compute latency | uT energy | uT PE energy "
        "| LTH util | LTH latency | LTH energy | paper latency / energy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    here = [r for r in t3 if r["model"] == model_name]
    if not here:
        return ""
    norm: dict[str, dict[int, dict[str, float]]] = {}
    for label in ("u-Ticket", "LTH"):
        norm[label] = {}
        for n in TABLE3_PES:
            vals: dict[str, list[float]] = {}
            for seed in sorted({r["seed"] for r in here}):
                sel = {r["pe"]: r for r in here if r["ticket"] == label and r["seed"] == seed}
                if n not in sel or 2 not in sel:
                    continue
                for key in ("cycles", "compute_cycles", "energy_pj", "pe_energy_pj"):
                    vals.setdefault(key, []).append(sel[n][key] / sel[2][key])
                vals.setdefault("utilization", []).append(sel[n]["utilization"])
            norm[label][n] = {k: float(np.mean(v)) for k, v in vals.items()}
    for n in TABLE3_PES:
        u, lt = norm["u-Ticket"].get(n, {}), norm["LTH"].get(n, {})
        lat, en = PAPER_TABLE3[n]

        def f(d: dict[str, float], k: str) -> str:
            return f"{d[k]:.3f}" if k in d else "-"

        out.append(
            f"| {n} | {f(u, 'utilization')} | {f(u, 'cycles')} | {f(u, 'compute_cycles')} "
            f"| {f(u, 'energy_pj')} | {f(u, 'pe_energy_pj')} | {f(lt, 'utilization')} "
            f"| {f(lt, 'cycles')} | {f(lt, 'energy_pj')} | {lat:.2f} / {en:.2f} |"
        )
    return "\n".join(out)


def groups_line(model_name: str, width: float, in_shape: tuple[int, int, int]) -> str:
    """How many filter groups each conv layer holds on 16 PEs (mapping K)."""
    from snn.models import ModelConfig, build_model

    model = build_model(ModelConfig(name=model_name, width=width), in_shape, 10)
    convs = [m.weight.shape[0] for m in model.prunable().values() if m.weight.ndim == 4]
    groups = [-(-k // 16) for k in convs]
    many = sum(g >= 4 for g in groups)
    return (
        f"{model_name} width {width}: {len(convs)} conv layers, filter groups on 16 PEs "
        f"{groups}; {many} of {len(convs)} hold >= 4 groups"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet19"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist5k"])
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0.25)
    parser.add_argument("--rounds", type=int, default=14)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per pruning round")
    parser.add_argument("--dense-epochs", type=int, default=8)
    parser.add_argument("--rewind-epoch", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "runs" / "scale"))
    parser.add_argument("--report-only", action="store_true", help="score saved tickets only")
    parser.add_argument("--name", default="reproduce_scale", help="results/<name>.{json,md}")
    args = parser.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    settings = {k: v for k, v in vars(args).items() if k not in ("out", "report_only", "name")}
    if not args.report_only:
        train_all(args, out, log)
    scored = score_all(args, out, log)
    in_shape = (1, 8, 8) if args.dataset == "digits" else (1, 28, 28)
    md = [groups_line(m, args.width, in_shape) for m in args.models]
    for m in args.models:
        md += ["", matched_tables(scored["rows"], m), "", table3(scored["table3"], m)]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"settings": settings, **scored}, indent=1)
    )
    (RESULTS / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    log(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
