"""snn.data: embedded sets, deterministic stratified splits, real-set readers and errors."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from snn.data import DATASETS, DatasetNotFoundError, ImageDataset, SizedDataset, load_dataset


def _tensors(ds: SizedDataset) -> tuple[torch.Tensor, torch.Tensor]:
    assert isinstance(ds, torch.utils.data.TensorDataset)
    x, y = ds.tensors
    return x, y


def _labels(ds: SizedDataset) -> np.ndarray:
    if isinstance(ds, torch.utils.data.TensorDataset):
        return ds.tensors[1].numpy()
    assert isinstance(ds, ImageDataset)
    return ds.labels.numpy()


def test_digits_shapes_range_and_sizes() -> None:
    s = load_dataset("digits", seed=0)
    assert s.in_shape == (1, 8, 8) and s.n_classes == 10 and s.name == "digits"
    assert len(s.train) + len(s.val) + len(s.test) == 1797
    assert len(s.test) == pytest.approx(0.2 * 1797, abs=1)
    assert len(s.val) == pytest.approx(0.1 * 1797, abs=1)
    x, y = _tensors(s.train)
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and float(x.max()) > 0.9


def test_splits_deterministic_per_seed_and_disjoint() -> None:
    a, b, c = (load_dataset("digits", seed=s) for s in (3, 3, 4))
    for part in ("train", "val", "test"):
        ta, tb, tc = (_tensors(getattr(s, part))[0] for s in (a, b, c))
        assert torch.equal(ta, tb)
        assert not torch.equal(ta, tc)
    # No sample appears in two splits (digits has a few duplicate images, so compare counts).
    x_all = torch.cat([_tensors(a.train)[0], _tensors(a.val)[0], _tensors(a.test)[0]])
    assert x_all.shape[0] == 1797


def test_mnist5k_stratified_class_balance() -> None:
    s = load_dataset("mnist5k", seed=1)
    assert s.in_shape == (1, 28, 28)
    counts = [np.bincount(_labels(d), minlength=10) for d in (s.train, s.val, s.test)]
    assert counts[0].tolist() == [350] * 10
    assert counts[1].tolist() == [50] * 10
    assert counts[2].tolist() == [100] * 10
    x = _tensors(s.train)[0]
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # The source is sorted by label: the split must be shuffled.
    assert len(set(_labels(s.train)[:50].tolist())) > 5


def test_unknown_name_and_bad_fractions() -> None:
    with pytest.raises(ValueError, match="allowed: digits, mnist5k, cifar10"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="test_fraction"):
        load_dataset("digits", val_fraction=0.5, test_fraction=0.5)
    assert set(DATASETS) == {"digits", "mnist5k", "cifar10", "fmnist", "svhn"}


def test_zero_val_fraction_gives_empty_val() -> None:
    s = load_dataset("digits", val_fraction=0.0)
    assert len(s.val) == 0 and len(s.train) + len(s.test) == 1797


@pytest.mark.parametrize(
    ("name", "title", "ctor"),
    [
        ("cifar10", "CIFAR-10", "CIFAR10"),
        ("fmnist", "Fashion-MNIST", "FashionMNIST"),
        ("svhn", "SVHN", "SVHN"),
    ],
)
def test_missing_real_dataset_clear_error(tmp_path: Path, name: str, title: str, ctor: str) -> None:
    where = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, root=where)
    msg = str(err.value)
    assert not (tmp_path / "nowhere").exists()  # reading never creates the data folder
    assert "\n" not in msg
    assert msg.startswith(f"{title} not found in {where}")
    assert f"torchvision.datasets.{ctor}(root='{where}'" in msg and "data.root" in msg


def test_default_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSE_DATA_ROOT", str(tmp_path / "envroot"))
    with pytest.raises(DatasetNotFoundError, match="envroot"):
        load_dataset("cifar10")


def _fake_cifar(root: Path, per_class: int = 2) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = np.repeat(np.arange(10), per_class)
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels.tolist()}, f)


def test_cifar10_reader_splits_and_augmentation(tmp_path: Path) -> None:
    _fake_cifar(tmp_path)
    s = load_dataset("cifar10", root=tmp_path, seed=0, cutout=8)
    assert s.in_shape == (3, 32, 32) and s.n_classes == 10
    assert len(s.train) == 90 and len(s.val) == 10 and len(s.test) == 20
    assert np.bincount(_labels(s.val), minlength=10).tolist() == [1] * 10
    assert isinstance(s.train, ImageDataset) and isinstance(s.val, ImageDataset)
    assert s.train.pad == 4 and s.train.flip and s.train.cutout == 8
    assert s.val.pad == 0 and not s.val.flip and s.test.pad == 0  # type: ignore[attr-defined]
    idx = torch.arange(16)
    x1, _ = s.train.get_batch(idx, torch.Generator().manual_seed(5))
    x2, _ = s.train.get_batch(idx, torch.Generator().manual_seed(5))
    x3, _ = s.train.get_batch(idx, torch.Generator().manual_seed(6))
    assert x1.shape == (16, 3, 32, 32) and torch.equal(x1, x2) and not torch.equal(x1, x3)
    # Evaluation splits are the plain normalized images.
    xv, _ = s.val.get_batch(torch.arange(2))
    raw = s.val.images[:2].float() / 255.0
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    assert torch.allclose(xv, (raw - mean) / std)
    x0, y0 = s.test[0]
    assert x0.shape == (3, 32, 32) and int(y0) == 0


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fmnist_reader(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 10)):
        _write_idx(raw / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    s = load_dataset("fmnist", root=tmp_path, val_fraction=0.25)
    assert s.in_shape == (1, 28, 28)
    assert (len(s.train), len(s.val), len(s.test)) == (30, 10, 10)
    assert not s.train.flip and s.train.pad == 0  # type: ignore[attr-defined]


def test_svhn_reader(tmp_path: Path) -> None:
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("test", 10)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1)  # SVHN stores digit 0 as label 10
        savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
    s = load_dataset("svhn", root=tmp_path, val_fraction=0.5)
    assert s.in_shape == (3, 32, 32)
    assert sorted(set(_labels(s.test).tolist())) == list(range(10))
    assert len(s.train) == 10 and len(s.val) == 10
