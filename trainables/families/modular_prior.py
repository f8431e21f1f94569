"""The adaptive Gaussian-mixture prior of the modular auto-encoder (Valenti & Bacciu, Sec. 3, after
Eq. 2): one mixture per code partition, one component per value of the partition's factor, its mean
and covariance estimated from the encoded labelled subset. One set of labelled samples serves every
partition, which is why the labels needed stay constant as the number of factor combinations grows
(the paper's point, Table 1). ``PriorBuffers`` keeps it with the modules (checkpointed and saved).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

_LOG_2PI = math.log(2 * math.pi)


class MixturePrior:
    """One Gaussian mixture per partition, one component per value of the partition's factor.

    Built from per-factor lists: ``means[k]`` (V_k, P) and ``covariances[k]`` (V_k, P, P), each
    covariance symmetric positive definite. Internally padded to ``max_values`` components: the
    padded ones never win a classification (their log-likelihood is -inf) and are never sampled.

    Per-component log-likelihoods are the component densities without mixture weights: the paper's
    classification is by the most likely component, and with any uniform weighting the argmax is
    the same.
    """

    def __init__(self, means: Sequence[Tensor], covariances: Sequence[Tensor]) -> None:
        if len(means) == 0 or len(means) != len(covariances):
            raise ValueError(f"{len(means)} mean sets but {len(covariances)} covariance sets")
        self.factor_sizes = tuple(int(m.shape[0]) for m in means)
        self.partition_size = int(means[0].shape[1])
        n_factors, max_values, p = len(means), max(self.factor_sizes), self.partition_size
        ref = means[0]
        self.means = torch.zeros(n_factors, max_values, p, dtype=ref.dtype, device=ref.device)
        eye = torch.eye(p, dtype=ref.dtype, device=ref.device)
        self.covariances = eye.repeat(n_factors, max_values, 1, 1)  # (K, V, P, P)
        self.valid = torch.zeros(n_factors, max_values, dtype=torch.bool, device=ref.device)
        for k, (mean, cov) in enumerate(zip(means, covariances, strict=True)):
            size = mean.shape[0]
            if mean.shape != (size, p) or cov.shape != (size, p, p):
                raise ValueError(
                    f"factor {k}: means {tuple(mean.shape)} and covariances {tuple(cov.shape)} "
                    f"do not match ({size}, {p}) / ({size}, {p}, {p})"
                )
            self.means[k, :size] = mean.to(ref)
            self.covariances[k, :size] = cov.to(ref)
            self.valid[k, :size] = True
        # Raises if a covariance is not positive definite; padded components are the identity.
        self.scale_tril = torch.linalg.cholesky(self.covariances)  # (K, V, P, P)
        # L^-1 once, so that a batch costs one einsum rather than N * K * V triangular solves.
        self._tril_inv = torch.linalg.solve_triangular(
            self.scale_tril, eye.expand_as(self.scale_tril), upper=False
        )  # (K, V, P, P)

    @property
    def n_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def max_values(self) -> int:
        return max(self.factor_sizes)

    @property
    def code_dim(self) -> int:
        return self.n_factors * self.partition_size

    def to(self, device: torch.device | str) -> MixturePrior:
        """The same prior on ``device``."""
        return MixturePrior(
            [self.means[k, :s].to(device) for k, s in enumerate(self.factor_sizes)],
            [self.covariances[k, :s].to(device) for k, s in enumerate(self.factor_sizes)],
        )

    def _partitions(self, codes: Tensor) -> Tensor:
        if codes.ndim != 2 or codes.shape[1] != self.code_dim:
            raise ValueError(
                f"codes must be (N, {self.code_dim}) = (N, K * P) with K={self.n_factors}, "
                f"P={self.partition_size}; got {tuple(codes.shape)}"
            )
        return codes.reshape(codes.shape[0], self.n_factors, self.partition_size)  # (N, K, P)

    def log_likelihood(self, codes: Tensor) -> Tensor:
        """log N(z_k; mu_kv, Sigma_kv) for every partition k and component v: (N, K, max_values).

        -inf for the padded components v >= factor_sizes[k].
        """
        z = self._partitions(codes).to(self.means)  # (N, K, P)
        diff = z[:, :, None, :] - self.means  # (N, K, V, P)
        # y = L^-1 diff: |y|^2 is the Mahalanobis distance diff^T Sigma^-1 diff (Sigma = L L^T).
        y = torch.einsum("kvij,nkvj->nkvi", self._tril_inv, diff)  # (N, K, V, P)
        mahalanobis = y.pow(2).sum(-1)  # (N, K, V)
        half_log_det = self.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K, V)
        log_p = -0.5 * (mahalanobis + self.partition_size * _LOG_2PI) - half_log_det
        return log_p.masked_fill(~self.valid, -math.inf)  # (N, K, V)

    def classify(self, codes: Tensor, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Most likely component of every partition, and whether its log-likelihood exceeds
        ``threshold`` (strictly): ``(classes (N, K) int64, accepted (N, K) bool)``, numpy.

        The threshold rejects codes that lie far from every component (the relational learner's
        output landed in no factor value), as in the predecessor's thresholded maximum-likelihood
        classification.
        """
        best, classes = self.log_likelihood(codes).max(-1)  # (N, K), (N, K)
        accepted = best > threshold
        return classes.cpu().numpy().astype(np.int64), accepted.cpu().numpy()

    def sample_classes(self, n: int, generator: torch.Generator | None = None) -> np.ndarray:
        """``n`` class tuples, each factor uniform over its values, independently: (n, K) int64."""
        device = generator.device if generator is not None else "cpu"
        columns = [
            torch.randint(s, (n,), generator=generator, device=device) for s in self.factor_sizes
        ]
        return torch.stack(columns, 1).cpu().numpy().astype(np.int64)  # (n, K)

    def sample(
        self, classes: np.ndarray | Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """A code (N, K * P) whose partition k is drawn from component ``classes[:, k]``.

        Used for the adversarial prior's "real" samples and for the relation accuracy's sources.
        ``generator`` must live on the prior's device (as for ``sample_classes``).
        """
        classes = torch.as_tensor(np.asarray(classes), dtype=torch.long, device=self.means.device)
        n = classes.shape[0]
        if classes.ndim != 2 or classes.shape[1] != self.n_factors:
            raise ValueError(f"classes must be (N, {self.n_factors}); got {tuple(classes.shape)}")
        sizes = torch.tensor(self.factor_sizes, device=classes.device)
        if bool((classes < 0).any()) or bool((classes >= sizes).any()):
            raise ValueError(f"classes out of range for factor sizes {self.factor_sizes}")
        factor = torch.arange(self.n_factors, device=classes.device).expand(n, -1)  # (N, K)
        mean = self.means[factor, classes]  # (N, K, P)
        tril = self.scale_tril[factor, classes]  # (N, K, P, P)
        noise = torch.randn(
            mean.shape, generator=generator, dtype=mean.dtype, device=mean.device
        )  # (N, K, P)
        z = mean + (tril @ noise.unsqueeze(-1)).squeeze(-1)  # (N, K, P)
        return z.reshape(n, self.code_dim)


def fit_prior(
    codes: Tensor,
    classes: np.ndarray,
    factor_sizes: Sequence[int],
    partition_size: int,
    *,
    covariance_scale: float = 0.1,
    eps: float = 1e-4,
    factor_names: Sequence[str] | None = None,
) -> MixturePrior:
    """The adaptive prior from encoded labelled samples (paper, Sec. 3: mu_kv and Sigma_kv are the
    empirical mean and covariance of the encoded supervised samples whose factor k has value v).

    ``codes`` (N, K * P) are the encoded labelled subset, ``classes`` (N, K) its factor classes.
    Partition k's component v is fitted on partition k of the codes with ``classes[:, k] == v``:
    the same labelled samples serve every partition.

    Covariance: the maximum-likelihood estimate (ddof = 0, i.e. divided by the number of samples,
    defined even for a value with a single labelled example), times ``covariance_scale`` (0.1 in the
    predecessor's code: narrower components keep the values apart), plus ``eps * I`` so that it
    stays positive definite with few examples or a collapsed partition. A value with no labelled
    example is an error: its component cannot be estimated. Fitting runs in float64 without
    gradients; the prior has the codes' dtype and device.
    """
    codes = codes.detach()
    classes = np.asarray(classes)
    sizes = [int(s) for s in factor_sizes]
    n_factors, p = len(sizes), int(partition_size)
    if codes.ndim != 2 or codes.shape[1] != n_factors * p:
        raise ValueError(
            f"codes must be (N, K * P) = (N, {n_factors * p}); got {tuple(codes.shape)}"
        )
    if classes.shape != (codes.shape[0], n_factors):
        raise ValueError(f"classes must be ({codes.shape[0]}, {n_factors}); got {classes.shape}")
    names = list(factor_names) if factor_names is not None else [f"#{k}" for k in range(n_factors)]
    z = codes.to(torch.float64).reshape(-1, n_factors, p)  # (N, K, P)
    eye = torch.eye(p, dtype=torch.float64, device=codes.device)
    means, covariances = [], []
    for k, size in enumerate(sizes):
        if classes[:, k].min(initial=0) < 0 or classes[:, k].max(initial=0) >= size:
            raise ValueError(f"factor {names[k]!r}: classes out of range [0, {size})")
        mean_k, cov_k = [], []
        for v in range(size):
            mask = torch.as_tensor(classes[:, k] == v, device=codes.device)
            if not bool(mask.any()):
                raise ValueError(
                    f"factor {names[k]!r} value {v} has no labelled example: its prior component "
                    f"cannot be estimated"
                )
            zk = z[mask, k]  # (n_v, P)
            mu = zk.mean(0)  # (P,)
            centred = zk - mu
            cov = centred.T @ centred / zk.shape[0]  # (P, P), ddof = 0
            mean_k.append(mu)
            cov_k.append(covariance_scale * cov + eps * eye)
        means.append(torch.stack(mean_k).to(codes.dtype))  # (V_k, P)
        covariances.append(torch.stack(cov_k).to(codes.dtype))  # (V_k, P, P)
    return MixturePrior(means, covariances)


class PriorBuffers(nn.Module):
    """The adaptive prior as buffers (checkpointed and saved with the modules): padded means
    (K, V, P), covariances (K, V, P, P) and whether it has been fitted."""

    def __init__(self, factor_sizes: list[int], partition_size: int):
        super().__init__()
        self.factor_sizes = [int(s) for s in factor_sizes]
        k, v, p = len(self.factor_sizes), max(self.factor_sizes), partition_size
        self.register_buffer("means", torch.zeros(k, v, p))
        self.register_buffer("covariances", torch.eye(p).repeat(k, v, 1, 1))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def store(self, prior: MixturePrior) -> None:
        self.means.copy_(prior.means)
        self.covariances.copy_(prior.covariances)
        self.fitted.fill_(True)

    def prior(self) -> MixturePrior:
        sizes = self.factor_sizes
        return MixturePrior(
            [self.means[k, :s] for k, s in enumerate(sizes)],
            [self.covariances[k, :s] for k, s in enumerate(sizes)],
        )
