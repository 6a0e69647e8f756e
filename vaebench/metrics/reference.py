"""Reproductions: a run that names a published result is measured the way the reference measured it.

A suite's run table may carry ``reference = { source = "...", value = 89.78, samples = 200,
epochs = 500 }``: where the number comes from, the published -log p(x), the number of
importance samples it was estimated with, and the epochs it was trained for. This metric
estimates the run's IS-NLL at the reference's own K on the test split (the ``is_nll`` column
keeps the run's K, 5000 in standard runs), and reports the difference ours - published.
A run trained for fewer epochs than the reference is labelled shortened: its row is a
measurement, never a reproduction. A reference whose schedule ends by early stopping gives its
most epochs as ``epochs``; a run that its own patience rule stopped before them is complete.
"""

from __future__ import annotations

from vaebench.evaluation.context import Column, EvalContext
from vaebench.evaluation.importance import IS_PRECISIONS, log_likelihoods


def describe_setting(settings, epochs_run, selection: str) -> str:
    """The training and evaluation setting of a run, in the words papers use."""
    widths = "-".join(str(w) for w in settings.hidden)
    schedule = ""
    if settings.lr_milestones:
        schedule = f", lr x{settings.lr_gamma:.3g} after epochs {','.join(str(m) for m in settings.lr_milestones)}"
    return (
        f"MLP {widths} {settings.activation}, latent {settings.latent_dim}, batch {settings.batch_size}, "
        f"{settings.optimizer} lr {settings.lr:g}{schedule}, {epochs_run} epochs, {selection}, "
        f"{settings.binarization} binarisation, {settings.dataset}"
    )


class ReferenceNLL:
    name = "reference_nll"
    description = "for runs that name a published result: IS-NLL at the reference's own K, and ours - published"
    columns = (
        Column("reference", "none", "", "the published result this run reproduces: paper or library, and table", text=True),
        Column("reference_value", "none", "nats", "the published -log p(x)"),
        Column("reference_samples", "none", "", "the importance samples K the reference used", text=True),
        Column("is_nll_reference_k", "lower", "nats", "our IS-NLL on the test split at the reference's K", label="IS-NLL at ref. K"),
        Column("delta", "none", "nats", "ours - published, both at the reference's K"),
        Column("reproduction", "none", "", "complete (the whole schedule, or stopped by its early-stopping rule), or shortened", text=True),
        Column("setting", "none", "", "architecture, latent size, batch, optimiser and schedule, epochs, binarisation", text=True),
    )

    def __call__(self, ctx: EvalContext) -> dict:
        reference = ctx.reference
        if not reference:
            reason = "the run names no published result (reference = { ... } in its suite table)"
            return {name: None for name in ("reference_value", "is_nll_reference_k", "delta")} | {
                f"{name}_na": reason for name in ("reference_value", "is_nll_reference_k", "delta")
            }
        k = int(reference["samples"])
        if k == ctx.is_samples and ctx.values.get("is_nll") is not None:
            nll = float(ctx.values["is_nll"])  # the same estimate at the same K: is_nll already made it
        else:
            split, positions = ctx.split("test")
            label_log_prior = ctx.label_log_prior() if getattr(ctx.model, "label_conditioned", False) else None
            result = log_likelihoods(ctx.model, split, positions, k, label_log_prior=label_log_prior,
                                     max_rows=ctx.eval_batch_rows, decode_dtype=IS_PRECISIONS[ctx.is_precision])
            nll = float(-result["log_px"].mean())
        epochs_run = ctx.training.epochs_run if ctx.training is not None else None
        target = reference.get("epochs")
        stopped_early = bool(getattr(ctx.training, "stopped_early", False))
        complete = target is None or stopped_early or (epochs_run is not None and epochs_run >= target)
        status = f"complete, stopped early after {epochs_run} epochs" if stopped_early else "complete"
        return {
            "reference": reference["source"],
            "reference_value": float(reference["value"]),
            "reference_samples": k,
            "is_nll_reference_k": nll,
            "delta": nll - float(reference["value"]),
            "reproduction": status if complete else f"shortened: {epochs_run} of {target} epochs",
            "setting": describe_setting(ctx.settings, epochs_run, ctx.values.get("selection", "")) if ctx.settings is not None else None,
        }
