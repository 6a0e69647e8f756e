"""Datasets: loading, fixed-seed splits, binarisation and on-device tensors.

A dataset plugin registers a :class:`DatasetSpec`; the runner turns it into
:class:`ImageData`, whose splits are single tensors on the training device.
Batches are index slices of those tensors, and the ``dynamic`` policy draws
fresh binary pixels on the device for every training batch.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from vaebench.errors import UsageError, first_line

BINARIZATIONS = ("dynamic", "static", "threshold", "none")
VAL_SPLITS = ("random", "last")
SPLIT_SEED = 0  # splits never depend on the run's seed
TEST_BINARIZATION_SEED = 1234  # held-out splits are binarised once, identically for every run


@dataclass
class RawData:
    """What a dataset loader returns: grey levels in [0, 1], flattened, on the CPU.

    ``test_x`` is ``None`` when the source has no official test split; one is then
    carved out with the fixed split seed. ``val_x`` is the source's own validation split
    where it has one (binarised MNIST's 10,000 images); otherwise validation images are
    held out of the training split with the fixed split seed.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor | None
    test_y: Tensor | None
    image_shape: tuple[int, int, int]
    n_classes: int
    source: str = ""
    val_x: Tensor | None = None
    val_y: Tensor | None = None


@dataclass
class DatasetSpec:
    """A registered dataset.

    ``load(data_dir)`` returns :class:`RawData`; ``data_dir`` is the user's
    ``--data-dir`` (or ``None``). Loaders raise :class:`UsageError` with a
    one-line fix when the data cannot be found or read.
    """

    name: str
    description: str
    load: Callable[[Path | None], RawData]
    val_fraction: float = 0.1
    test_fraction: float = 0.2  # used only when the source has no test split


@dataclass
class Split:
    """One split: images ``x`` as ``[N, D]`` float tensors and labels ``y`` as ``[N]``."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class ImageData:
    """Train / validation / test splits on one device, with the binarisation policy.

    For ``dynamic`` the training images stay grey and :meth:`training_batch`
    draws binary pixels for each batch; validation and test are binarised once
    with a fixed seed. ``static`` binarises every split once, ``threshold`` uses
    x >= 0.5, ``none`` keeps grey levels.
    """

    name: str
    image_shape: tuple[int, int, int]
    n_classes: int
    binarization: str
    train: Split
    val: Split
    test: Split
    source: str = ""
    extras: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.train.x.shape[1]

    def training_batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """Images and labels of the training examples ``index``, binarised per policy."""
        x = self.train.x.index_select(0, index)  # cheaper than advanced indexing on the CPU
        if self.binarization == "dynamic":
            x = sample_pixels(x)
        return x, self.train.y.index_select(0, index)

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}")
        split = getattr(self, name)
        if name == "train" and self.binarization == "dynamic":
            return Split(self.extras["train_eval_x"], split.y)
        return split

    def describe(self) -> dict:
        return {
            "dataset": self.name,
            "binarization": self.binarization,
            "image_shape": list(self.image_shape),
            "n_classes": self.n_classes,
            "n_train": len(self.train),
            "n_val": len(self.val),
            "n_test": len(self.test),
        }


def sample_pixels(probs: Tensor) -> Tensor:
    """Bernoulli(probs) pixels as ``u < probs`` with u ~ U[0, 1): on the CPU the very draws of
    ``torch.bernoulli`` from the same generator state, and cheaper."""
    return torch.rand_like(probs).lt_(probs)  # in place: 1.0 where u < p, else 0.0


def _binarize_once(x: Tensor, seed: int) -> Tensor:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.bernoulli(x, generator=generator)


def apply_policy(x: Tensor, policy: str, seed: int) -> Tensor:
    """Binarise a held-out tensor once (CPU, fixed seed), according to ``policy``."""
    if policy in ("dynamic", "static"):
        return _binarize_once(x, seed)
    if policy == "threshold":
        return (x >= 0.5).to(x.dtype)
    if policy == "none":
        return x
    raise UsageError(f"unknown binarization '{policy}'; choose one of {', '.join(BINARIZATIONS)}")


def prepare(spec: DatasetSpec, data_dir: Path | None, binarization: str, device: torch.device, val_images: int | None = None,
            val_split: str = "random") -> ImageData:
    """Load ``spec``, split it with the fixed split seed and move it to ``device``.

    ``val_images`` holds that many training images out for validation instead of the
    dataset's ``val_fraction`` (for example 10,000 to match the 50k/10k/10k split of
    the binarised-MNIST literature). ``val_split`` says which: a random subset drawn with
    the fixed split seed, or (``"last"``) the last ones in the source's order, as
    Tomczak & Welling 2018's code holds out MNIST's last 10,000 training images. A dataset
    with its own validation split keeps it (``val_images`` must then be ``None`` or its size).
    """
    if val_split not in VAL_SPLITS:
        raise UsageError(f"unknown validation split '{val_split}'; choose one of {', '.join(VAL_SPLITS)}")
    if binarization not in BINARIZATIONS:
        raise UsageError(f"unknown binarization '{binarization}'; choose one of {', '.join(BINARIZATIONS)}")
    raw = spec.load(data_dir)
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    x, y = raw.train_x.float(), raw.train_y.long()
    if raw.test_x is None:
        order = torch.randperm(len(x), generator=generator)
        n_test = int(round(spec.test_fraction * len(x)))
        test_x, test_y = x[order[:n_test]], y[order[:n_test]]
        x, y = x[order[n_test:]], y[order[n_test:]]
    else:
        test_x, test_y = raw.test_x.float(), raw.test_y.long()
    if raw.val_x is not None:  # the source's own validation split, used as it is
        if val_images is not None and int(val_images) != len(raw.val_x):
            raise UsageError(f"{spec.name} has a fixed validation split of {len(raw.val_x):,} images; drop --val-images {val_images}")
        val_x, val_y, train_x, train_y = raw.val_x.float(), raw.val_y.long(), x, y
    else:
        n_val = int(round(spec.val_fraction * len(x))) if val_images is None else int(val_images)
        if not 0 < n_val < len(x):
            raise UsageError(f"--val-images {n_val} leaves no training or no validation images ({len(x)} in all); choose fewer")
        if val_split == "last":
            order = torch.cat([torch.arange(len(x) - n_val, len(x)), torch.arange(len(x) - n_val)])
        else:
            order = torch.randperm(len(x), generator=generator)
        val_x, val_y = x[order[:n_val]], y[order[:n_val]]
        train_x, train_y = x[order[n_val:]], y[order[n_val:]]

    extras = {}
    if binarization == "dynamic":
        # a fixed binarisation of the training split, for train-vs-test evaluation
        extras["train_eval_x"] = _binarize_once(train_x, TEST_BINARIZATION_SEED + 2).to(device)
    else:
        train_x = apply_policy(train_x, binarization, TEST_BINARIZATION_SEED + 2)
    val_x = apply_policy(val_x, binarization, TEST_BINARIZATION_SEED + 1)
    test_x = apply_policy(test_x, binarization, TEST_BINARIZATION_SEED)
    return ImageData(
        name=spec.name,
        image_shape=raw.image_shape,
        n_classes=raw.n_classes,
        binarization=binarization,
        train=Split(train_x, train_y).to(device),
        val=Split(val_x, val_y).to(device),
        test=Split(test_x, test_y).to(device),
        source=raw.source,
        extras=extras,
    )


# --- loaders for the built-in datasets -------------------------------------------------


def load_digits(data_dir: Path | None = None) -> RawData:
    """scikit-learn's bundled 8x8 digits (1,797 images, 17 grey levels); works offline."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    return RawData(x, y, None, None, (1, 8, 8), 10, source="sklearn.datasets.load_digits")


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vaebench" / "data"


def candidate_roots(data_dir: Path | None) -> list[Path]:
    """Where torchvision datasets are looked for: --data-dir, $VAEBENCH_DATA, the user cache."""
    roots = []
    if data_dir is not None:
        roots.append(Path(data_dir))
    if os.environ.get("VAEBENCH_DATA"):
        roots.append(Path(os.environ["VAEBENCH_DATA"]))
    roots.append(user_cache_dir())
    return roots


def _torchvision_split(cls, root: Path, train: bool, download: bool):
    dataset = cls(root=str(root), train=train, download=download)
    x = dataset.data.reshape(len(dataset.data), -1).float() / 255.0
    return x, dataset.targets.long()


def torchvision_loader(cls_name: str) -> Callable[[Path | None], RawData]:
    """A loader for an MNIST-layout torchvision dataset (``MNIST``, ``FashionMNIST``)."""

    def load(data_dir: Path | None) -> RawData:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        if data_dir is not None and not Path(data_dir).is_dir():
            raise UsageError(f"--data-dir {data_dir} does not exist; pass a folder that holds {cls_name}/raw")
        for root in candidate_roots(data_dir):
            raw_dir = root / cls_name / "raw"
            if not raw_dir.is_dir():
                continue
            for name in IDX_FILES:  # name the damaged file before torchvision trips over it
                check_idx(raw_dir / name)
            try:
                train = _torchvision_split(cls, root, True, download=False)
                test = _torchvision_split(cls, root, False, download=False)
            except RuntimeError as exc:
                if "not found" in str(exc).lower():
                    continue  # incomplete folder: try the next root
                raise _corrupt(raw_dir, exc) from None
            except Exception as exc:  # torchvision raises assorted errors on damaged IDX files
                raise _corrupt(raw_dir, exc) from None
            return _raw_from(train, test, f"{raw_dir}")
        cache = user_cache_dir()
        try:
            cache.mkdir(parents=True, exist_ok=True)
            train = _torchvision_split(cls, cache, True, download=True)
            test = _torchvision_split(cls, cache, False, download=True)
        except Exception as exc:
            searched = ", ".join(str(r) for r in candidate_roots(data_dir))
            reason = first_line(exc)
            raise UsageError(
                f"{cls_name} was not found in {searched} and could not be downloaded ({reason}); "
                f"pass --data-dir DIR, where DIR/{cls_name}/raw holds the four IDX files"
            ) from None
        return _raw_from(train, test, f"{cache / cls_name / 'raw'} (downloaded)")

    return load


IDX_FILES = {  # what torchvision's MNIST-layout datasets read, and the IDX magic of each
    "train-images-idx3-ubyte": 0x0803,
    "train-labels-idx1-ubyte": 0x0801,
    "t10k-images-idx3-ubyte": 0x0803,
    "t10k-labels-idx1-ubyte": 0x0801,
}


def check_idx(path: Path) -> None:
    """Raise :class:`UsageError` naming ``path`` when it exists but is not a whole IDX file
    (a wrong magic number, or fewer bytes than its header promises)."""
    if not path.exists():
        return  # missing files are torchvision's to report (or to download)
    fix = f"delete {path} so that it downloads again, or pass --data-dir to a good copy"
    expected_magic = IDX_FILES[path.name]
    with open(path, "rb") as handle:
        header = handle.read(4)
        if len(header) < 4 or int.from_bytes(header, "big") != expected_magic:
            raise UsageError(f"{path} is not an IDX file of its kind (wrong magic number); {fix}")
        dims = header[3]
        shape_bytes = handle.read(4 * dims)
    if len(shape_bytes) < 4 * dims:
        raise UsageError(f"{path} is truncated inside its header; {fix}")
    shape = [int.from_bytes(shape_bytes[4 * i : 4 * i + 4], "big") for i in range(dims)]
    expected = 4 + 4 * dims + math.prod(shape)
    size = path.stat().st_size
    if size < expected:
        raise UsageError(f"{path} is truncated ({size:,} of {expected:,} bytes); {fix}")


def _raw_from(train, test, source: str) -> RawData:
    (train_x, train_y), (test_x, test_y) = train, test
    return RawData(train_x, train_y, test_x, test_y, (1, 28, 28), 10, source=source)


def _corrupt(raw_dir: Path, exc: Exception) -> UsageError:
    reason = first_line(exc)
    return UsageError(
        f"the IDX files in {raw_dir} are corrupt or truncated ({reason}); "
        "delete them to download afresh, or pass --data-dir to a good copy"
    )
