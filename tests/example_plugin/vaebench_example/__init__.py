"""An example third-party plugin with one component of every kind, to copy from.

* variant ``example-beta-vae``: the beta-VAE (Higgins et al. 2017), on vaebench's shared
  Gaussian networks with the weighted-KL objective;
* dataset ``example-bars``: 8x8 images of one horizontal or vertical bar (the classic
  bars problem), generated offline;
* prior ``example-laplace``: a factorised Laplace(0, b) prior;
* objective ``example-free-bits``: the ELBO with a floor on each latent dimension's KL
  (Kingma et al. 2016);
* metric ``example_posterior_scale``: the average posterior standard deviation;
* tracker ``example-csv``: each epoch's numbers as a CSV file in the run folder, when a run
  asks for it with ``--tracker example-csv``.

The regions between ``# readme:`` and ``# end readme`` are the README's examples, verbatim
(a test checks it).
"""

import csv
from pathlib import Path

import torch
from torch.distributions import Independent, Laplace

from vaebench import hookimpl
from vaebench.components import ObjectiveComponent, PriorComponent
from vaebench.data import DatasetSpec, RawData
from vaebench.distributions import StandardNormalPrior
from vaebench.distributions.priors import Prior
from vaebench.evaluation.context import Column
from vaebench.models import GaussianVAE
from vaebench.objectives import Terms, WeightedKL, elbo_parts
from vaebench.schedules import Constant
from vaebench.variant import BuildContext, Recipe, Variant


# readme: variant
class BetaVAE(Variant):
    name = "example-beta-vae"
    description = "beta-VAE with a constant KL weight (example third-party plugin)"
    reference = "Higgins et al. 2017"
    options = {"beta": 4.0}  # --option example-beta-vae.beta=2
    accepts_prior = True  # --prior NAME gives it any registered prior

    def build(self, context: BuildContext) -> Recipe:
        # context: settings (the suite's widths, latent size, activation, likelihood...), x_dim, image_shape, n_classes,
        # n_train, epochs, options, dataset, prior; the model is an nn.Module with prior, posterior(x, y, index) and
        # likelihood(z, y), each a torch Distribution; decode must accept leading sample dimensions ([K, B, D] in IS-NLL)
        s = context.settings
        prior = context.prior or StandardNormalPrior(s.latent_dim)
        model = GaussianVAE(context.x_dim, s.hidden, s.latent_dim, prior, s.likelihood, context.n_classes, activation=s.activation)
        return Recipe(model, WeightedKL(Constant(context.options["beta"])), latent=f"{getattr(prior, 'label', 'N(0,I)')} {s.latent_dim}-d")
# end readme


# readme: dataset
def load_bars(data_dir):
    """2,000 8x8 images, each one horizontal or vertical bar; labels 0-7 rows, 8-15 columns."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 16, (2000,), generator=generator)
    images = torch.zeros(2000, 8, 8)
    for i, label in enumerate(labels.tolist()):
        if label < 8:
            images[i, label, :] = 1.0
        else:
            images[i, :, label - 8] = 1.0
    noisy = (0.9 * images + 0.05).reshape(2000, 64)  # flattened, grey levels in [0, 1]
    return RawData(noisy, labels, test_x=None, test_y=None, image_shape=(1, 8, 8), n_classes=16, source="generated")


BARS = DatasetSpec("example-bars", "8x8 bars, generated offline", load_bars, val_fraction=0.1, test_fraction=0.2)
# end readme


class LaplacePrior(Prior):
    def __init__(self, dim, scale):
        super().__init__()
        self.register_buffer("scale", torch.full((dim,), float(scale)))

    def distribution(self):
        return Independent(Laplace(torch.zeros_like(self.scale), self.scale), 1)


class ExampleLaplace(PriorComponent):
    name = "example-laplace"
    description = "factorised Laplace(0, b) prior"
    options = {"scale": 1.0}

    def build(self, context):
        return LaplacePrior(context.settings.latent_dim, context.options["scale"])


class FreeBits(ObjectiveComponent):
    name = "example-free-bits"
    description = "ELBO with each latent dimension's KL floored at lambda nats (free bits)"
    reference = "Kingma et al. 2016"
    options = {"nats": 0.25}

    def build(self, context):
        floor = context.options["nats"]

        def objective(model, batch, progress):
            q = model.posterior(batch.x, batch.y, batch.index)
            per_dim = torch.distributions.kl_divergence(q.base_dist, torch.distributions.Normal(0.0, 1.0))  # [B, D]
            parts = elbo_parts(model, batch.x, batch.y, batch.index)
            loss = (-parts.log_likelihood + per_dim.mean(0).clamp(min=floor).sum()).mean()
            return Terms(loss, {"elbo": parts.elbo.detach().mean(), "kl": parts.kl.detach().mean()})

        return objective


class PosteriorScale:
    name = "example_posterior_scale"
    description = "the average standard deviation of q(z|x) over test images and latent dimensions"
    columns = (Column("example_posterior_scale", "none", "", "mean of q(z|x)'s standard deviations on the test split"),)

    def __call__(self, ctx):
        split, positions = ctx.split("test")
        with torch.inference_mode():
            q = ctx.model.posterior(split.x, split.y, positions)
            try:
                return {"example_posterior_scale": float(q.stddev.mean())}
            except NotImplementedError:  # a column that does not apply: None, and the reason the row shows
                return {"example_posterior_scale": None, "example_posterior_scale_na": f"its q ({type(q).__name__}) has no stddev"}


# readme: tracker
class EpochCSV:
    name = "example-csv"
    description = "each epoch's numbers as RUN_DIR/epochs.csv"

    def on_run_start(self, run):  # run: run, seed, run_dir, settings, variant
        Path(run["run_dir"], "epochs.csv").unlink(missing_ok=True)

    def on_epoch_end(self, run, record):  # record: epoch, loss, the objective's logs, val_neg_elbo, lr, ...
        path = Path(run["run_dir"], "epochs.csv")
        numbers = {k: v for k, v in record.items() if isinstance(v, (int, float))}
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=sorted(numbers))
            if handle.tell() == 0:
                writer.writeheader()
            writer.writerow(numbers)

    def on_run_end(self, run, record):  # record: the finished run's metrics.json
        pass
# end readme


# readme: hooks
@hookimpl
def register_variants(register):
    register(BetaVAE())


@hookimpl
def register_datasets(register):
    register(BARS)


@hookimpl
def register_trackers(register):  # --tracker example-csv; register_callbacks would run for every run, unasked
    register(EpochCSV())
# end readme


@hookimpl
def register_priors(register):
    register(ExampleLaplace())


@hookimpl
def register_objectives(register):
    register(FreeBits())


@hookimpl
def register_metrics(register):
    register(PosteriorScale())
