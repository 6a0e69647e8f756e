"""Built-in datasets: scikit-learn's 8x8 digits (default, offline), MNIST, Fashion-MNIST and Larochelle's binarised MNIST."""

from vaebench import hookimpl
from vaebench.binarized_mnist import load_binarized_mnist
from vaebench.data import DatasetSpec, load_digits, torchvision_loader


@hookimpl
def register_datasets(register):
    register(DatasetSpec("digits", "scikit-learn's bundled 8x8 digits, 1,797 images, 10 classes (offline)", load_digits))
    register(DatasetSpec("mnist", "MNIST 28x28 through torchvision: 55k train, 5k validation, 10k test", torchvision_loader("MNIST"), val_fraction=1 / 12))
    register(
        DatasetSpec(
            "fashion-mnist",
            "Fashion-MNIST 28x28 through torchvision: 55k train, 5k validation, 10k test",
            torchvision_loader("FashionMNIST"),
            val_fraction=1 / 12,
        )
    )
    register(
        DatasetSpec(
            "binarized-mnist",
            "Larochelle's binarised MNIST: 50k train, 10k validation, 10k test, each binarised once (labels from MNIST)",
            load_binarized_mnist,
        )
    )
