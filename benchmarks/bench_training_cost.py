"""Cost of the paper-scale reproduction: training throughput of the paper's VGG-16 / ResNet-19
(T=4, CIFAR-10 shapes, batch 128, SGD with the paper's settings and Cutout), extrapolated to an
epoch, a round and a whole ticket of the shipped ``search_spaces/cifar10_*.yaml`` schedules.

It runs ``snn.train.train`` (the code path every trial uses) for a few hundred images of random
CIFAR-shaped uint8 data (throughput does not depend on the pixel values) on the best device
present: CUDA when available, else the CPU. On a GPU it measures three variants of the training
arithmetic (``TrainConfig.precision`` / ``channels_last``): fp32, bf16 autocast, and bf16 with
channels-last memory order, and prints GPU-hours per ticket for each. Run it on the GPU you plan
to use:

``python benchmarks/bench_training_cost.py [--images 1024] [--models vgg16 resnet19]
[--variants fp32 bf16 bf16-cl]``

Writes ``results/training_cost_<device>.json``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save

SPACES = {
    "vgg16": "search_spaces/cifar10_vgg16.yaml",
    "resnet19": "search_spaces/cifar10_resnet19.yaml",
}
CIFAR_TRAIN = 45_000  # 50,000 minus the 10 % validation split of the shipped spaces


VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "fp32", "channels_last": False},
    "bf16": {"precision": "bf16", "channels_last": False},
    "bf16-cl": {"precision": "bf16", "channels_last": True},
}
"""Training-arithmetic variants: ``TrainConfig`` fields."""


def measure(model_name: str, images: int, device: str, variant: str = "fp32") -> dict[str, Any]:
    """Seconds per training image (second epoch of two: the first warms up kernels/allocator)."""
    import torch

    from dse.space import load_space
    from snn.data import ImageDataset, Splits
    from snn.models import build_model

    space = load_space(ROOT / SPACES[model_name]).space
    cfg = space.train.model_copy(update={"epochs": 2, "device": device, **VARIANTS[variant]})
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (images,), generator=gen)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    train_set = ImageDataset(x, y, mean, std, pad=4, flip=True, cutout=space.data.cutout)
    empty = ImageDataset(x[:0], y[:0], mean, std)
    splits = Splits(train_set, empty, empty, (3, 32, 32), 10, "cifar10-shaped")
    model = build_model(space.model, (3, 32, 32), 10, seed=0)
    from snn.train import train

    seconds: list[float] = []
    result = train(
        model,
        splits,
        cfg,
        seed=0,
        on_epoch=lambda e, _: seconds.append(time.perf_counter()),
    )
    per_image = (seconds[1] - seconds[0]) / images if len(seconds) > 1 else result.seconds / images
    epochs, rounds = space.train.epochs, space.pruning.rounds
    epoch_s = per_image * CIFAR_TRAIN
    return {
        "model": model_name,
        "device": device,
        "variant": variant,
        "images_measured": images,
        "batch_size": cfg.batch_size,
        "timesteps": space.model.timesteps,
        "images_per_second": 1.0 / per_image,
        "seconds_per_epoch": epoch_s,
        "epochs_per_round": epochs,
        "rounds_incl_dense": rounds + 1,
        "hours_per_round": epoch_s * epochs / 3600,
        "hours_per_ticket": epoch_s * epochs * (rounds + 1) / 3600,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="images per measured epoch")
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet19"])
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=None,
        help="training arithmetic (default: all three on a GPU, fp32 on the CPU)",
    )
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    variants = args.variants or (list(VARIANTS) if device == "cuda" else ["fp32"])
    unit = "GPU-hours" if device == "cuda" else "CPU-hours"
    if device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu x{torch.get_num_threads()}"
    rows = []
    for m in args.models:
        for variant in variants:
            row = measure(m, max(args.images, 2 * 128), device, variant)
            row["unit"] = unit
            rows.append(row)
            print(
                f"{m} [{variant}] on {name}: {row['images_per_second']:.0f} images/s, "
                f"{row['seconds_per_epoch']:.0f} s per epoch of {CIFAR_TRAIN} images, "
                f"{row['hours_per_round']:.1f} {unit} per round "
                f"({row['epochs_per_round']} epochs), "
                f"{row['hours_per_ticket']:.1f} {unit} per ticket "
                f"({row['rounds_incl_dense']} rounds)"
            )
    tag = "cuda" if device == "cuda" else "cpu"
    save(f"training_cost_{tag}", {"device_name": name, "rows": rows})
    if not math.isfinite(sum(r["hours_per_ticket"] for r in rows)):
        raise SystemExit("non-finite measurement")


if __name__ == "__main__":
    main()
