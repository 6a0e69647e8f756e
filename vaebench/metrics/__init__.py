"""The built-in metrics (registered by the ``metrics`` built-in plugin)."""

from vaebench.metrics.elbo import TestELBO
from vaebench.metrics.gaps import InferenceGaps
from vaebench.metrics.is_nll import ImportanceSampledNLL, importance_log_likelihood
from vaebench.metrics.latent_usage import LatentUsage
from vaebench.metrics.nmi import NMI
from vaebench.metrics.pictures import Pictures
from vaebench.metrics.reference import ReferenceNLL
from vaebench.metrics.sample_quality import SampleQuality
from vaebench.metrics.throughput import Throughput

BUILTIN_METRICS = (TestELBO, ImportanceSampledNLL, InferenceGaps, NMI, LatentUsage, SampleQuality, Throughput, ReferenceNLL, Pictures)

__all__ = ["TestELBO", "InferenceGaps", "ImportanceSampledNLL", "NMI", "LatentUsage", "SampleQuality", "Throughput", "Pictures", "ReferenceNLL", "importance_log_likelihood", "BUILTIN_METRICS"]
