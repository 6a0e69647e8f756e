"""Which distributions skip torch.distributions' argument validation.

Distributions rebuilt every training step from network outputs or fixed buffers
(the Gaussian posterior, the pixel likelihoods, the N(0, I) and Bernoulli(0.5)
priors) skip the check: it tests the support of every pixel of every batch and
costs several percent of a small model's training step. Nothing goes unnoticed:
the training loop checks every logged term each epoch and names the first one
that is not finite. Distributions with learnable or fitted parameters (the
mixture priors) keep torch's validation.
"""

UNCHECKED = {"validate_args": False}
