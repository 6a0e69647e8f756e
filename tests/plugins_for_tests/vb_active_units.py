"""A third-party metric plugin, as a user would write it: active units (Burda et al. 2016).

A latent dimension is active when Cov_x(E_q[z_d | x]) > 0.01 over the test split.
Loaded with ``vaebench -p vb_active_units``; its column reaches the leaderboard.
"""

import torch

from vaebench import hookimpl
from vaebench.evaluation.context import Column, posterior_means


class UnitsInUse:
    name = "units_in_use"
    description = "latent dimensions whose posterior mean varies over the test split (Cov > 0.01)"
    columns = (Column("units_in_use", "higher", "dimensions", "dimensions with Cov_x(E_q[z_d|x]) > 0.01 (Burda et al. 2016)", digits=1),)

    def __call__(self, ctx):
        split, positions = ctx.split("test")
        means = posterior_means(ctx, split, positions)
        return {"units_in_use": int((means.var(dim=0) > 0.01).sum())}


@hookimpl
def register_metrics(register):
    register(UnitsInUse())
