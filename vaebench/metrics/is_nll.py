"""The IS-NLL metric: importance-sampled -log p(x) on the test split, per class, and train vs test.

The estimator is :func:`vaebench.evaluation.importance.log_likelihoods`. For
label-conditioned models the metric reports -log p(x|y) and the marginal
-log sum_y p(y) p(x|y), with p(y) the training label frequencies; ``is_nll`` is the
marginal, comparable with the other rows: K counts latent samples (y, z) per image, spread
over the labels by a pilot estimate of p(y|x) (:class:`~vaebench.evaluation.importance.LabelAllocation`),
so every row decodes K images per test image.

How far the estimate has converged is reported from the same samples: the IS-NLL of the
first K/5 of them, the change from K/5 to K (an IS estimate of -log p(x) falls towards the
truth as K grows, so a large change says K was not enough), and the effective sample size
of the weights. Per-example values go to ``is_nll_per_example.csv``.
"""

from __future__ import annotations

import time

from vaebench.atomic import write_atomic
from vaebench.evaluation.context import Column, EvalContext
from vaebench.evaluation.importance import IS_PRECISIONS, LabelAllocation, importance_log_likelihood, log_likelihoods

__all__ = ["ImportanceSampledNLL", "importance_log_likelihood", "TRAIN_SUBSET"]

NLL_NAMES = {"log_px": "nll", "log_px_given_y": "nll_given_y", "log_px_fifth": "nll_fifth"}  # per-example CSV columns
TRAIN_SUBSET = 1000  # the train-vs-test comparison uses at most this many fixed training examples


class ImportanceSampledNLL:
    name = "is_nll"
    description = "importance-sampled -log p(x) on the test split (K = --is-samples), per class and train vs test"
    columns = (
        Column("is_nll", "lower", "nats", "-log (1/K sum_k p(x, z_k)/r(z_k|x)), z_k from the model's proposal r, on the whole test "
               "split (for label-conditioned models the marginal over labels, its K samples of (y, z) spread over the labels "
               "by a pilot p(y|x): is_label_allocation)", label="IS-NLL", headline=True),
        Column("is_nll_k_fifth", "lower", "nats", "IS-NLL from the first K/5 of the same samples", label="IS-NLL at K/5"),
        Column("is_nll_k_change", "none", "nats", "IS-NLL at K/5 - IS-NLL at K: how much the estimate still fell over the last "
               "4K/5 samples; gaps between rows smaller than this are ties", label="K/5 - K", headline=True),
        Column("is_ess", "higher", "samples", "effective sample size of the importance weights, (sum w)^2 / sum w^2, "
               "mean over test images (at most K)", label="ESS", digits=0),
        Column("is_nll_given_y", "lower", "nats", "-log p(x|y) for label-conditioned models, from the samples "
               "of the true label", label="IS-NLL(x|y)"),
        Column("is_nll_train", "lower", "nats", "IS-NLL on a fixed subset of training images (as many as the test split has, "
               f"at most {TRAIN_SUBSET})", label="IS-NLL train"),
        Column("is_nll_train_minus_test", "none", "nats", "is_nll_train - is_nll: negative when training images score better "
               "(overfitting)", label="train - test"),
        Column("is_samples", "none", "", "importance samples K per image", text=True, label="K"),
        Column("is_precision", "none", "", "the decoder's arithmetic inside IS-NLL", text=True),
        Column("is_proposal", "none", "", "the proposal r(z|x) the samples come from", text=True),
        Column("is_label_allocation", "none", "", "how a label-conditioned model's K samples are spread over the labels", text=True),
    )

    def __call__(self, ctx: EvalContext) -> dict:
        import pandas as pd  # imported here: `vaebench list` loads this module and needs no pandas

        model = ctx.model
        values: dict = {
            "is_samples": ctx.is_samples,
            "is_precision": ctx.is_precision,
            "is_proposal": getattr(model, "proposal_label", "q(z|x)"),
        }
        label_log_prior = ctx.label_log_prior() if getattr(model, "label_conditioned", False) else None
        if label_log_prior is not None:
            values["is_label_allocation"] = LabelAllocation(ctx.is_samples, label_log_prior.shape[0]).describe()
        frames = []
        test_size = len(ctx.data.test)
        for split_name, limit in (("test", None), ("train", min(TRAIN_SUBSET, test_size))):
            split, positions = ctx.split(split_name, limit)
            started = time.perf_counter()

            def progress(done, total, split_name=split_name, started=started):
                elapsed = time.perf_counter() - started
                eta = elapsed / done * (total - done) if done else float("nan")
                ctx.say(f"is_nll {split_name} {done:,}/{total:,} images, ETA {eta:.0f} s")

            result = log_likelihoods(
                model, split, positions, ctx.is_samples, label_log_prior=label_log_prior, max_rows=ctx.eval_batch_rows,
                decode_dtype=IS_PRECISIONS[ctx.is_precision], progress=progress,
            )
            frame = pd.DataFrame({"split": split_name, "index": positions.cpu().numpy(), "label": split.y.cpu().numpy()})
            for key, tensor in result.items():  # log-likelihoods become NLLs; the ESS stays as it is
                frame[NLL_NAMES.get(key, key)] = (-tensor if key in NLL_NAMES else tensor).numpy()
            frames.append(frame)
            suffix = "" if split_name == "test" else "_train"
            values["is_nll" + suffix] = float(frame["nll"].mean())
            if "nll_given_y" in frame:
                values["is_nll_given_y" + suffix] = float(frame["nll_given_y"].mean())
            if split_name == "test":
                values["is_nll_k_fifth"] = float(frame["nll_fifth"].mean())
                values["is_nll_k_change"] = values["is_nll_k_fifth"] - values["is_nll"]
                values["is_ess"] = float(frame["ess"].mean())
                for label, mean in frame.groupby("label")["nll"].mean().items():
                    values[f"is_nll_class_{label}"] = float(mean)
        differs = getattr(model, "train_q_differs", None)  # a reason, when training images get another kind of q
        if differs:
            values["is_nll_train_minus_test"] = None
            values["is_nll_train_minus_test_na"] = f"{differs}: the difference would measure the fits, not overfitting"
        else:
            values["is_nll_train_minus_test"] = values["is_nll_train"] - values["is_nll"]
        table = pd.concat(frames, ignore_index=True)
        write_atomic(ctx.run_dir / "is_nll_per_example.csv", lambda tmp: table.to_csv(tmp, index=False))
        return values
