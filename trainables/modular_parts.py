"""Pure pieces of the modular weakly-disentangled auto-encoder (Valenti & Bacciu, "Modular
Representations for Weak Disentanglement"; DESIGN.md section 4).

The code of the M-AE is split into K partitions of ``partition_size`` dimensions, partition k
encoding generative factor k (paper, Sec. 3). This module holds what the family needs around that
code, with no training loop:

- **relations** (Sec. 4, "all the relations that affect the change of a single generative factor"):
  one +1 and one -1 step per relevant factor, wrapping for cyclic factors (shape, hue,
  orientation) and clamping for ordinal ones (position, scale);
- the **adaptive Gaussian-mixture prior** of each partition (Sec. 3, after Eq. 2): one component per
  value of the factor, its mean and covariance estimated from the encoded labelled subset. One set
  of labelled samples serves every partition, which is why the labels needed stay constant as the
  number of factor combinations grows (the paper's point, Table 1);
- the **relation accuracy** of Table 1: sample a code from the prior, apply a random relation with
  the relational learner, classify every partition by its most likely component with a likelihood
  threshold (accepted ratio, and accuracy over the accepted outputs, as the predecessor paper's
  code reported them);
- the **relation outcomes** of a grid of sources x relations (``relation_outcomes``): expected and
  converted factor values of every result, and which are right (what ``relations.png`` marks).

Classes are numpy integer arrays (N, K), as the dataset views give them; codes are torch tensors
(N, K * P). Importable without Ray or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

_LOG_2PI = math.log(2 * math.pi)
RELATION_KINDS = ("cyclic", "saturating")

# ---------------------------------------------------------------- relations


@dataclass(frozen=True)
class Relation:
    """Change factor ``factor`` (its column in the classes) by ``step`` classes.

    ``kind`` is ``"cyclic"`` (the class wraps modulo ``size``: the factor has no ends, e.g. shape or
    hue) or ``"saturating"`` (the class is clamped to ``[0, size - 1]``: moving left at the left
    border stays there). ``size`` is the factor's number of values, carried so that a relation can
    be applied on its own.
    """

    name: str
    factor: int
    step: int
    kind: str
    size: int

    def __post_init__(self) -> None:
        if self.kind not in RELATION_KINDS:
            raise ValueError(f"unknown relation kind {self.kind!r}; known: {list(RELATION_KINDS)}")
        if self.size < 1:
            raise ValueError(
                f"relation {self.name!r}: factor size must be positive, got {self.size}"
            )


def relations_for(
    factor_names: Sequence[str], factor_sizes: Sequence[int], kinds: dict[str, str]
) -> list[Relation]:
    """One ``<name>+1`` and one ``<name>-1`` relation per relevant factor, in factor order.

    The relevant factors are the ones ``kinds`` names (factor name -> ``"cyclic"`` or
    ``"saturating"``); the others get no relation. A name that is not a factor, or a relevant
    factor with a single value (no relation could change it), is an error. A cyclic factor of size
    2 gets both relations even though they agree: the set stays "+1 and -1 per factor".
    """
    if len(factor_names) != len(factor_sizes):
        raise ValueError(f"{len(factor_names)} factor names but {len(factor_sizes)} sizes")
    unknown = sorted(set(kinds) - set(factor_names))
    if unknown:
        raise ValueError(f"kinds name unknown factors {unknown}; factors: {list(factor_names)}")
    relations = []
    for index, (name, size) in enumerate(zip(factor_names, factor_sizes, strict=True)):
        if name not in kinds:
            continue
        if int(size) < 2:
            raise ValueError(f"factor {name!r} has {size} value(s): no relation can change it")
        for step in (1, -1):
            relations.append(Relation(f"{name}{step:+d}", index, step, kinds[name], int(size)))
    return relations


def apply_relation(classes: np.ndarray, relation: Relation) -> np.ndarray:
    """The classes (N, K) after ``relation``: its factor moved by the step, others unchanged.

    Returns a new array; ``classes`` is not modified.
    """
    classes = np.asarray(classes)
    if classes.ndim != 2 or relation.factor >= classes.shape[1]:
        raise ValueError(
            f"relation {relation.name!r} changes column {relation.factor}; classes have shape "
            f"{classes.shape}"
        )
    out = classes.copy()
    moved = classes[:, relation.factor] + relation.step  # (N,)
    if relation.kind == "cyclic":
        moved = np.mod(moved, relation.size)
    else:
        moved = np.clip(moved, 0, relation.size - 1)
    out[:, relation.factor] = moved
    return out


# ---------------------------------------------------------------- adaptive mixture prior


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


# ---------------------------------------------------------------- relation accuracy


@dataclass(frozen=True)
class RelationScores:
    """Relation accuracy of Table 1.

    ``accepted``: fraction of outputs whose every partition's best log-likelihood exceeds the
    threshold. ``accuracy``: fraction of the accepted outputs that are correct (NaN if none is
    accepted). ``per_relation``: the same accuracy per relation name (NaN where none accepted).
    ``chance``: the accuracy of a map that ignores its input and outputs a code of uniformly random
    classes (see ``chance_accuracy``).
    """

    accepted: float
    accuracy: float
    per_relation: dict[str, float]
    chance: float


def chance_accuracy(factor_sizes: Sequence[int]) -> float:
    """Expected relation accuracy of a map that outputs a prior sample of uniformly random classes.

    Such an output is correct when its class tuple equals the target tuple, which happens with
    probability prod_k 1 / size_k whatever the target is (the factors are drawn independently and
    uniformly). This assumes the prior classifies its own samples back to their classes (well
    separated components) and that acceptance does not depend on the class. It is the floor a
    relational learner must beat; it is not the accuracy of the identity map (which is right only
    where a saturating relation is at its border, so that the target equals the source).
    """
    return float(np.prod([1.0 / int(s) for s in factor_sizes]))


def relation_targets(
    source_classes: np.ndarray, relation_ids: np.ndarray | Tensor, relations: Sequence[Relation]
) -> np.ndarray:
    """The classes (N, K) relations ``relation_ids`` (N,) (indices into ``relations``) should
    give from ``source_classes`` (N, K): row i is ``apply_relation`` of its relation."""
    source_classes = np.asarray(source_classes)
    ids = np.asarray(torch.as_tensor(relation_ids).cpu()).astype(np.int64)  # (N,)
    if ids.shape != source_classes.shape[:1]:
        raise ValueError(f"{source_classes.shape[0]} sources but relation ids {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= len(relations)):
        raise ValueError(f"relation ids out of range [0, {len(relations)})")
    targets = source_classes.copy()  # (N, K)
    for r, relation in enumerate(relations):
        rows = ids == r
        if rows.any():
            targets[rows] = apply_relation(source_classes[rows], relation)
    return targets


def score_relations(
    prior: MixturePrior,
    source_classes: np.ndarray,
    relation_ids: np.ndarray | Tensor,
    outputs: Tensor,
    relations: Sequence[Relation],
    *,
    threshold: float,
) -> RelationScores:
    """Score relational-map ``outputs`` (N, K * P) for sources of ``source_classes`` (N, K) under
    relations ``relation_ids`` (N,) (indices into ``relations``).

    An output is accepted when every partition's most likely component has log-likelihood above
    ``threshold``; it is correct when accepted and its classified tuple equals the target tuple
    (``apply_relation`` of the source): the changed factor took the target value and every other
    partition kept its source value. A saturating relation at its border has target = source, so
    there leaving the code unchanged is correct.
    """
    source_classes = np.asarray(source_classes)
    ids = np.asarray(torch.as_tensor(relation_ids).cpu()).astype(np.int64)  # (N,)
    n = source_classes.shape[0]
    if ids.shape != (n,) or outputs.shape[0] != n:
        raise ValueError(
            f"{n} sources, {ids.shape} relation ids and {tuple(outputs.shape)} outputs disagree"
        )
    targets = relation_targets(source_classes, ids, relations)  # (N, K)
    predicted, accepted_parts = prior.classify(outputs, threshold)  # (N, K), (N, K)
    accepted = accepted_parts.all(1)  # (N,)
    correct = accepted & (predicted == targets).all(1)  # (N,)

    def ratio(num: int, den: int) -> float:
        return num / den if den else math.nan

    per_relation = {
        relation.name: ratio(int(correct[ids == r].sum()), int(accepted[ids == r].sum()))
        for r, relation in enumerate(relations)
    }
    return RelationScores(
        accepted=float(accepted.mean()) if n else math.nan,
        accuracy=ratio(int(correct.sum()), int(accepted.sum())),
        per_relation=per_relation,
        chance=chance_accuracy(prior.factor_sizes),
    )


def relation_accuracy(
    prior: MixturePrior,
    relational_map: Callable[[Tensor, Tensor], Tensor],
    relations: Sequence[Relation],
    n: int,
    *,
    threshold: float,
    generator: torch.Generator | None = None,
) -> RelationScores:
    """Relation accuracy as the paper measures it (Sec. 4, "Latent Codes Manipulation"): sample a
    code from the prior, apply a random relation, check the outcome.

    ``n`` source class tuples are drawn uniformly, their codes from the prior, one relation each
    uniformly from ``relations``; ``relational_map(codes (n, K * P), relation_ids (n,) long)``
    returns the manipulated codes, scored by ``score_relations``. ``chance`` in the result is the
    accuracy of a map that outputs a random prior code (``chance_accuracy``).
    """
    if not relations:
        raise ValueError("no relations to score")
    sources = prior.sample_classes(n, generator)  # (n, K)
    codes = prior.sample(sources, generator)  # (n, K * P)
    device = generator.device if generator is not None else "cpu"
    ids = torch.randint(len(relations), (n,), generator=generator, device=device)  # (n,)
    with torch.no_grad():
        outputs = relational_map(codes, ids.to(codes.device))
    return score_relations(prior, sources, ids, outputs, relations, threshold=threshold)


# ---------------------------------------------------------------- one grid of relation results


@dataclass(frozen=True)
class RelationOutcomes:
    """Every relation applied to every source: what it should give and what it gave.

    ``targets`` (N, R, K): the source's classes moved by relation r (``apply_relation``).
    ``predicted`` (N, R, K): the converted output code, i.e. the most likely prior component of
    each of its partitions, with no threshold (as the family's ``converted_*`` test metrics
    classify codes). ``correct`` (N, R): every partition's component is the target's.
    """

    targets: np.ndarray
    predicted: np.ndarray
    correct: np.ndarray


def relation_outcomes(
    prior: MixturePrior,
    source_classes: np.ndarray,
    outputs: Tensor,
    relations: Sequence[Relation],
) -> RelationOutcomes:
    """Check a grid of relational-map outputs: ``outputs[i, r]`` (N, R, K * P) is the map applied to
    source i (of classes ``source_classes[i]``, (N, K)) with relation ``relations[r]``.

    A result is correct when the prior classifies every partition of it to the target's value:
    the changed factor moved to its new value and the others kept the source's (the criterion of
    ``score_relations``, without the acceptance threshold). Pure: what the relations picture
    marks.
    """
    source_classes = np.asarray(source_classes)
    n, n_relations = source_classes.shape[0], len(relations)
    if source_classes.ndim != 2 or source_classes.shape[1] != prior.n_factors:
        raise ValueError(
            f"source classes must be (N, {prior.n_factors}); got {source_classes.shape}"
        )
    if tuple(outputs.shape) != (n, n_relations, prior.code_dim):
        raise ValueError(
            f"outputs must be (N, R, K * P) = ({n}, {n_relations}, {prior.code_dim}); "
            f"got {tuple(outputs.shape)}"
        )
    ids = np.tile(np.arange(n_relations), n)  # (N * R,): row-major over (source, relation)
    targets = relation_targets(np.repeat(source_classes, n_relations, 0), ids, relations)
    predicted, _ = prior.classify(outputs.reshape(n * n_relations, -1), -math.inf)
    shape = (n, n_relations, prior.n_factors)
    targets, predicted = targets.reshape(shape), predicted.reshape(shape)
    return RelationOutcomes(targets, predicted, (predicted == targets).all(-1))
