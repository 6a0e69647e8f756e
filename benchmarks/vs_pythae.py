"""vaebench against pythae on equal work, side by side in one process (needs ``pip install pythae``).

Both train the same 784-400-20 Gaussian VAE with a Bernoulli decoder on the same 55,000
dynamically binarised MNIST training images, batch 128, Adam 1e-3, for one epoch each round:
pythae through its ``BaseTrainer``, vaebench through its harness (as ``speed.py`` measures
it). Then both estimate -log p(x) by importance sampling with the same K on the same test
images: pythae's ``VAE.get_nll``, vaebench's IS-NLL. Rounds alternate the two; the table
gives medians and the median of the per-round ratios.

    python benchmarks/vs_pythae.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

SPEED = Path(__file__).with_name("speed.py")


def speed_module():
    spec = importlib.util.spec_from_file_location("vaebench_speed", SPEED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pythae_model(latent_dim: int = 20):
    """A 784-400-``latent_dim`` VAE with ReLU MLPs and a Bernoulli (BCE) decoder, as pythae builds it."""
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Sequential(nn.Linear(784, 400), nn.ReLU())
            self.mu, self.log_var = nn.Linear(400, latent_dim), nn.Linear(400, latent_dim)

        def forward(self, x):
            h = self.hidden(x.reshape(-1, 784))
            return ModelOutput(embedding=self.mu(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(latent_dim, 400), nn.ReLU(), nn.Linear(400, 784), nn.Sigmoid())

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z).reshape(-1, 1, 28, 28))

    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=latent_dim, reconstruction_loss="bce")
    return VAE(config, encoder=Encoder(), decoder=Decoder())


def pythae_epoch(images: torch.Tensor) -> float:
    """Images/s of one epoch of pythae's BaseTrainer."""
    from pythae.data.preprocessors import DataProcessor
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    dataset = DataProcessor.to_dataset(images)
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(output_dir=out, num_epochs=1, learning_rate=1e-3, per_device_train_batch_size=128,
                                   per_device_eval_batch_size=128, no_cuda=True, steps_saving=None)
        trainer = BaseTrainer(model=pythae_model(), train_dataset=dataset, training_config=config)
        start = time.perf_counter()
        trainer.train()
        return len(images) / (time.perf_counter() - start)


def pythae_nll(test: torch.Tensor, k: int) -> float:
    """Images/s of pythae's importance-sampled NLL."""
    model = pythae_model().eval()
    start = time.perf_counter()
    model.get_nll(test.reshape(-1, 1, 28, 28), n_samples=k, batch_size=min(k, 1000))
    return len(test) / (time.perf_counter() - start)


def vaebench_nll(speed, test: torch.Tensor, k: int) -> float:
    from vaebench.evaluation.importance import importance_log_likelihood

    model = speed.gaussian_recipe(784).model.eval()
    start = time.perf_counter()
    importance_log_likelihood(model, test, None, None, k)
    return len(test) / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=1000, help="importance samples per image")
    parser.add_argument("--nll-images", type=int, default=50)
    args = parser.parse_args(argv)
    speed = speed_module()
    device = torch.device("cpu")
    data = speed.mnist(args.data_dir, device)
    train = torch.cat([data.training_batch(i)[0] for i in torch.arange(len(data.train)).split(4096)]).reshape(-1, 1, 28, 28)
    test = data.test.x[: args.nll_images]
    rows = {"pythae train": [], "vaebench train": [], "pythae nll": [], "vaebench nll": []}
    for _ in range(args.repeats):
        rows["pythae train"].append(pythae_epoch(train))
        rows["vaebench train"].append(speed.harness(data, device, 1)[1])  # whole epochs, as pythae is timed
        rows["pythae nll"].append(pythae_nll(test, args.k))
        rows["vaebench nll"].append(vaebench_nll(speed, test, args.k))
    median = {name: statistics.median(values) for name, values in rows.items()}
    train_ratio = statistics.median(v / p for v, p in zip(rows["vaebench train"], rows["pythae train"]))
    nll_ratio = statistics.median(v / p for v, p in zip(rows["vaebench nll"], rows["pythae nll"]))
    print(f"command: python benchmarks/vs_pythae.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} rounds, K = {args.k}, {len(test)} test images")
    print("| measurement | median images/s |\n|---|---|")
    for name, value in median.items():
        print(f"| {name} | {value:,.1f} |")
    print(f"\ntraining: vaebench {train_ratio:.2f}x pythae; IS-NLL: vaebench {nll_ratio:.1f}x pythae (medians of per-round ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
