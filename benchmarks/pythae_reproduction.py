"""pythae's own trainer on vaebench's binarised MNIST: is the pythae reproduction's delta vaebench's?

The ``pythae-vae`` row of results/reproductions follows pythae's recipe and lands above pythae's
published 89.78 nats (IS-NLL, K = 200). pythae trained on Larochelle's binarised MNIST, which cannot
be downloaded here; vaebench binarises the standard MNIST split once with a fixed seed (50k / 10k /
10k). This script trains pythae's reproducibility VAE (its examples/scripts/reproducibility/vae.py:
784-400-40 ReLU MLPs, BCE, Adam 1e-4, lr x 10^(-1/5) after epochs 200 and 350, batch 100, the best
validation epoch) through pythae's ``BaseTrainer`` on vaebench's own static split, and the same
recipe through ``vaebench run`` (the suite's ``pythae-vae`` run), both for ``--epochs`` (the
milestones scaled by epochs / 500). Each model's -log p(x) on the 10,000 test images is then
estimated at K = 200 by its own library: pythae's ``VAE.get_nll``, vaebench's IS-NLL.
Equal numbers put the delta on the data, not on vaebench's training or evaluation. Needs ``pip install pythae`` and MNIST under --data-dir.

    python benchmarks/pythae_reproduction.py --data-dir ../shared/data --epochs 100
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from vs_pythae import pythae_model  # noqa: E402

PYTHAE_EPOCHS, PYTHAE_MILESTONES, PYTHAE_GAMMA = 500, (200, 350), 10 ** (-1 / 5)
SUITE = Path(__file__).with_name("reproductions.toml")  # vaebench's side: its pythae-vae run
K = 200


def milestones_for(epochs: int) -> list[int]:
    return [max(1, round(m * epochs / PYTHAE_EPOCHS)) for m in PYTHAE_MILESTONES]


def train_pythae(data, epochs: int, out: Path):
    """pythae's BaseTrainer with its reproducibility settings; returns its final (best-validation) model."""
    from pythae.data.preprocessors import DataProcessor
    from pythae.models import AutoModel
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    torch.manual_seed(123)  # as pythae's script
    model = pythae_model(latent_dim=40)  # pythae's reproducibility VAE (examples/scripts/reproducibility/vae.py)
    config = BaseTrainerConfig(output_dir=str(out), num_epochs=epochs, learning_rate=1e-4, per_device_train_batch_size=100,
                               per_device_eval_batch_size=100, no_cuda=True, steps_saving=None, optimizer_cls="Adam",
                               scheduler_cls="MultiStepLR",
                               scheduler_params={"milestones": milestones_for(epochs), "gamma": PYTHAE_GAMMA})
    trainer = BaseTrainer(model=model, train_dataset=DataProcessor.to_dataset(data.train.x.reshape(-1, 1, 28, 28)),
                          eval_dataset=DataProcessor.to_dataset(data.val.x.reshape(-1, 1, 28, 28)), training_config=config)
    trainer.train()
    return AutoModel.load_from_folder(str(Path(trainer.training_dir) / "final_model")).eval()


def train_vaebench(data_dir: Path, epochs: int, out: Path) -> dict:
    """results/reproductions' pythae-vae run (its recipe from the suite file), for ``epochs``."""
    from vaebench.cli import main

    args = ["-q", "run", "--suite", str(SUITE), "pythae-vae", "--data-dir", str(data_dir), "--epochs", str(epochs),
            "--lr-milestones", ",".join(map(str, milestones_for(epochs))), "--metrics", "elbo,is_nll",
            "--is-samples", str(K), "--device", "cpu", "--out", str(out)]
    if main(args) != 0:
        raise SystemExit("the vaebench run failed; see its output above")
    return json.loads((out / "runs/pythae-vae/seed-0/metrics.json").read_text())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=100, help="epochs for both (pythae's recipe: 500)")
    parser.add_argument("--vaebench-record", type=Path, default=None, metavar="METRICS.json",
                        help="a finished vaebench run of this recipe at --epochs (for example results/reproductions/runs/"
                             "pythae-vae/seed-0/metrics.json at 500 epochs) instead of training one here")
    args = parser.parse_args(argv)
    from vaebench.data import prepare
    from vaebench.plugin_manager import load_plugins

    data = prepare(load_plugins().registry.get("dataset", "mnist"), args.data_dir, "static", torch.device("cpu"), val_images=10_000)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        if args.vaebench_record is None:
            record = train_vaebench(args.data_dir, args.epochs, Path(tmp) / "vaebench")
        else:
            record = json.loads(args.vaebench_record.read_text())
            if record.get("epochs_run") != args.epochs or "is_nll_reference_k" not in record:
                raise SystemExit(f"{args.vaebench_record} is not a finished {args.epochs}-epoch run with IS-NLL at K = {K}")
            record["is_nll"] = record["is_nll_reference_k"]
        vaebench_seconds = time.perf_counter() - start
        start = time.perf_counter()
        model = train_pythae(data, args.epochs, Path(tmp) / "pythae")
        with torch.no_grad():
            torch.manual_seed(0)
            pythae_nll = -model.get_nll(data.test.x.reshape(-1, 1, 28, 28), n_samples=K, batch_size=100)
        pythae_seconds = time.perf_counter() - start
    vaebench_wall = "(its record)" if args.vaebench_record else f"{vaebench_seconds:.0f}"
    print(f"command: python benchmarks/pythae_reproduction.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; pythae's recipe for {args.epochs} epochs "
          f"(lr milestones {milestones_for(args.epochs)}), vaebench's static MNIST split, IS-NLL at K = {K} on {len(data.test.x):,} test images")
    print("| trained and evaluated by | IS-NLL (nats) | -ELBO (nats) | best epoch | wall s |\n|---|---|---|---|---|")
    print(f"| pythae (BaseTrainer, VAE.get_nll) | {pythae_nll:.2f} | n/a | n/a | {pythae_seconds:.0f} |")
    print(f"| vaebench (vaebench run, IS-NLL) | {record['is_nll']:.2f} | {record['neg_elbo']:.2f} | {record.get('selected_epoch')} | {vaebench_wall} |")
    print(f"\nvaebench - pythae: {record['is_nll'] - pythae_nll:+.2f} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
