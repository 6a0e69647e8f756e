"""The IS-NLL metric: importance-sampled -log p(x) on the test split, per class, and train vs test.

The estimator is :func:`vaebench.evaluation.importance.importance_log_likelihood`. For
label-conditioned models the metric reports -log p(x|y) and the marginal
-log sum_y p(y) p(x|y), with p(y) the training label frequencies; ``is_nll`` is the
marginal, comparable with the other rows: K counts latent samples (y, z) per image,
K/C for each of the C labels, so every row decodes K images per test image. Per-example values go to
``is_nll_per_example.csv``.
"""

from __future__ import annotations

import time

from vaebench.atomic import write_atomic
from vaebench.evaluation.context import Column, EvalContext
from vaebench.evaluation.importance import IS_PRECISIONS, importance_log_likelihood, log_likelihoods

__all__ = ["ImportanceSampledNLL", "importance_log_likelihood", "TRAIN_SUBSET"]

TRAIN_SUBSET = 1000  # the train-vs-test comparison uses at most this many fixed training examples


class ImportanceSampledNLL:
    name = "is_nll"
    description = "importance-sampled -log p(x) on the test split (K = --is-samples), per class and train vs test"
    columns = (
        Column("is_nll", "lower", "nats", "-log (1/K sum_k p(x, z_k)/r(z_k|x)), z_k from the model's proposal r, on the whole test "
               "split (for label-conditioned models the marginal over labels, its K samples of (y, z) stratified over the "
               "labels, K/C each)", label="IS-NLL", headline=True),
        Column("is_nll_given_y", "lower", "nats", "-log p(x|y) for label-conditioned models, from the K/C samples "
               "of the true label", label="IS-NLL(x|y)"),
        Column("is_nll_train", "lower", "nats", "IS-NLL on a fixed subset of training images (as many as the test split has, "
               f"at most {TRAIN_SUBSET})", label="IS-NLL train"),
        Column("is_nll_train_minus_test", "none", "nats", "is_nll_train - is_nll: negative when training images score better "
               "(overfitting)", label="train - test"),
        Column("is_samples", "none", "", "importance samples K per image", text=True, label="K"),
        Column("is_precision", "none", "", "the decoder's arithmetic inside IS-NLL", text=True),
        Column("is_proposal", "none", "", "the proposal r(z|x) the samples come from", text=True),
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
            for key, tensor in result.items():
                frame["nll" + key[len("log_px"):]] = (-tensor).numpy()
            frames.append(frame)
            suffix = "" if split_name == "test" else "_train"
            values["is_nll" + suffix] = float(frame["nll"].mean())
            if "nll_given_y" in frame:
                values["is_nll_given_y" + suffix] = float(frame["nll_given_y"].mean())
            if split_name == "test":
                for label, mean in frame.groupby("label")["nll"].mean().items():
                    values[f"is_nll_class_{label}"] = float(mean)
        values["is_nll_train_minus_test"] = values["is_nll_train"] - values["is_nll"]
        table = pd.concat(frames, ignore_index=True)
        write_atomic(ctx.run_dir / "is_nll_per_example.csv", lambda tmp: table.to_csv(tmp, index=False))
        return values
