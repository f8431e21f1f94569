"""Pure pieces of the modular weakly-disentangled auto-encoder (Valenti & Bacciu, "Modular
Representations for Weak Disentanglement"; DESIGN.md section 4).

The code of the M-AE is split into K partitions of ``partition_size`` dimensions, partition k
encoding generative factor k (paper, Sec. 3). This module holds what the family needs around that
code, with no training loop:

- **relations** (Sec. 4, "all the relations that affect the change of a single generative factor"):
  one +1 and one -1 step per relevant factor, wrapping for cyclic factors (shape, hue,
  orientation) and clamping for ordinal ones (position, scale);
- the **relational learner** (an MLP from a code and a relation to the moved code);
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
import torch.nn.functional as F
from torch import Tensor, nn

from .modular_prior import MixturePrior

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


# ---------------------------------------------------------------- the relational learner


class RelationalLearner(nn.Module):
    """[code (K * P), one-hot relation (R)] -> code: tanh MLP, added to the input code."""

    def __init__(self, code_dim: int, n_relations: int, hidden: tuple[int, ...]):
        super().__init__()
        self.n_relations = n_relations
        layers: list[nn.Module] = []
        previous = code_dim + n_relations
        for width in hidden:
            layers += [nn.Linear(previous, width), nn.Tanh()]
            previous = width
        layers.append(nn.Linear(previous, code_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor, relation_ids: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(relation_ids, self.n_relations).to(codes.dtype)  # (N, R)
        return codes + self.net(torch.cat([codes, one_hot], 1))  # (N, K * P)


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
