"""Larochelle's binarised MNIST (Larochelle & Murray 2011): the fixed binarisation papers report on.

50,000 training, 10,000 validation and 10,000 test images, each pixel drawn once from its
MNIST grey level and stored as text, one image of 784 zeros and ones per line, in
``binarized_mnist_{train,valid,test}.amat``. pythae's and the VampPrior paper's "binary MNIST"
numbers are on these files, and a fresh binarisation of the same images scores differently
(benchmarks/README.md, "Where the pythae reproduction's delta comes from").

The files are looked for in ``<root>/BinarizedMNIST/`` for each root that MNIST is looked for
in (``--data-dir``, ``$VAEBENCH_DATA``, the user cache), and downloaded into the user cache
when none has them. They carry no labels. They follow MNIST's order (train: MNIST's first
50,000 training images; valid: its last 10,000; test: its test split), so the labels are
MNIST's, after a check that every binarised image matches its grey original far better than
its neighbour's: files in another order are refused, never mislabelled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaebench.data import RawData, candidate_roots, torchvision_loader, user_cache_dir
from vaebench.errors import UsageError, first_line

URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
FOLDER = "BinarizedMNIST"
SPLITS = {"train": 50_000, "valid": 10_000, "test": 10_000}  # images per file
PIXELS = 784


def file_name(split: str) -> str:
    return f"binarized_mnist_{split}.amat"


def read_amat(path: Path, images: int) -> Tensor:
    """``images`` x 784 pixels of 0.0 or 1.0 from a text file of zeros and ones."""
    text = np.fromfile(path, dtype=np.uint8)
    bits = text[(text == ord("0")) | (text == ord("1"))] - ord("0")
    if bits.size != images * PIXELS:
        raise UsageError(f"{path} holds {bits.size:,} binary pixels, not {images:,} images of 784: it is truncated or not "
                         "binarised MNIST; delete it so that it downloads again, or pass --data-dir to a good copy")
    return torch.from_numpy(bits.reshape(images, PIXELS).astype(np.float32))


def find_or_download(data_dir: Path | None) -> Path:
    """The folder that holds all three files: the first root that has them, else the user cache after a download."""
    for root in candidate_roots(data_dir):
        folder = Path(root) / FOLDER
        if all((folder / file_name(split)).is_file() for split in SPLITS):
            return folder
    folder = user_cache_dir() / FOLDER
    try:
        from torchvision.datasets.utils import download_url

        for split in SPLITS:
            if not (folder / file_name(split)).is_file():
                download_url(URL + file_name(split), str(folder))
    except Exception as exc:
        reason = first_line(exc)
        searched = ", ".join(str(Path(r) / FOLDER) for r in candidate_roots(data_dir))
        raise UsageError(f"binarised MNIST was not found in {searched} and could not be downloaded from {URL} ({reason}); "
                         f"pass --data-dir DIR, where DIR/{FOLDER} holds {', '.join(file_name(s) for s in SPLITS)}") from None
    return folder


def check_order(binary: Tensor, grey: Tensor, path: Path) -> None:
    """Refuse ``binary`` unless each image matches its own grey original far better than the next one's."""
    own = (binary - grey).abs().mean()
    neighbour = (binary - grey.roll(1, dims=0)).abs().mean()
    if not own < 0.5 * neighbour:
        raise UsageError(f"{path} is not in MNIST's order (pixel mismatch {own:.3f} against its own MNIST images, "
                         f"{neighbour:.3f} against their neighbours'), so its labels are unknown; use Larochelle's original files")


def load_binarized_mnist(data_dir: Path | None = None) -> RawData:
    folder = find_or_download(data_dir)
    splits = {split: read_amat(folder / file_name(split), images) for split, images in SPLITS.items()}
    mnist = torchvision_loader("MNIST")(data_dir)  # the labels, in the same order
    grey = {"train": mnist.train_x[:50_000], "valid": mnist.train_x[50_000:], "test": mnist.test_x}
    labels = {"train": mnist.train_y[:50_000], "valid": mnist.train_y[50_000:], "test": mnist.test_y}
    for split, binary in splits.items():
        check_order(binary, grey[split], folder / file_name(split))
    return RawData(splits["train"], labels["train"], splits["test"], labels["test"], (1, 28, 28), 10,
                   source=f"{folder} (labels: {mnist.source})", val_x=splits["valid"], val_y=labels["valid"])
