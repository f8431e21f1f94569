from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from trainables.families.modular_parts import (
    Relation,
    apply_relation,
    chance_accuracy,
    relation_accuracy,
    relation_outcomes,
    relation_targets,
    relations_for,
    score_relations,
)
from trainables.families.modular_prior import MixturePrior, fit_prior

NAMES = ("shape", "posX", "scale")
SIZES = (3, 3, 4)
KINDS = {"shape": "cyclic", "posX": "saturating", "scale": "saturating"}
P = 3
THRESHOLD = -25.0


def _all_classes() -> np.ndarray:
    """Every class tuple of the 3 x 3 x 4 grid, (36, 3)."""
    grid = np.meshgrid(*[np.arange(s) for s in SIZES], indexing="ij")
    return np.stack([g.ravel() for g in grid], 1)


def _hand_prior(seed: int = 0) -> MixturePrior:
    """Well separated components: value v of factor k sits 6 v along axis k mod P, with random SPD
    covariances of scale <= ~0.5 (samples stay within a unit or two of their mean)."""
    rng = np.random.default_rng(seed)
    means, covs = [], []
    for k, size in enumerate(SIZES):
        mean = np.zeros((size, P))
        mean[:, k % P] = 6.0 * np.arange(size)
        mean += rng.normal(0, 0.1, mean.shape)
        a = rng.normal(0, 0.3, (size, P, P))
        cov = a @ a.transpose(0, 2, 1) + 0.05 * np.eye(P)
        means.append(torch.tensor(mean))
        covs.append(torch.tensor(cov))
    return MixturePrior(means, covs)


# ---------------------------------------------------------------- relations


def test_relations_for_gives_plus_and_minus_per_named_factor():
    relations = relations_for(NAMES, SIZES, KINDS)
    assert [r.name for r in relations] == [
        "shape+1",
        "shape-1",
        "posX+1",
        "posX-1",
        "scale+1",
        "scale-1",
    ]
    assert relations[0] == Relation("shape+1", 0, 1, "cyclic", 3)
    assert relations[5] == Relation("scale-1", 2, -1, "saturating", 4)
    only_pos = relations_for(NAMES, SIZES, {"posX": "saturating"})
    assert [(r.name, r.factor) for r in only_pos] == [("posX+1", 1), ("posX-1", 1)]


@pytest.mark.parametrize(
    "kinds, match",
    [
        ({"colour": "cyclic"}, "unknown factors"),
        ({"shape": "circular"}, "unknown relation kind"),
    ],
)
def test_relations_for_rejects_bad_kinds(kinds, match):
    with pytest.raises(ValueError, match=match):
        relations_for(NAMES, SIZES, kinds)


def test_relations_for_rejects_single_valued_factor():
    with pytest.raises(ValueError, match="'colour' has 1 value"):
        relations_for(("colour", "shape"), (1, 3), {"colour": "cyclic"})


def test_cyclic_relation_wraps_at_both_ends_and_keeps_other_factors():
    classes = _all_classes()
    plus, minus = relations_for(NAMES, SIZES, KINDS)[:2]
    up, down = apply_relation(classes, plus), apply_relation(classes, minus)
    np.testing.assert_array_equal(up[:, 0], [(c + 1) % 3 for c in classes[:, 0]])
    np.testing.assert_array_equal(down[:, 0], [(c - 1) % 3 for c in classes[:, 0]])
    assert set(up[classes[:, 0] == 2, 0]) == {0}  # top wraps to 0
    assert set(down[classes[:, 0] == 0, 0]) == {2}  # bottom wraps to size - 1
    for out in (up, down):
        np.testing.assert_array_equal(out[:, 1:], classes[:, 1:])
    assert apply_relation(classes, plus) is not classes
    np.testing.assert_array_equal(classes, _all_classes())  # input untouched


def test_saturating_relation_clamps_at_both_ends_and_keeps_other_factors():
    classes = _all_classes()
    plus, minus = relations_for(NAMES, SIZES, KINDS)[4:]  # scale, size 4
    up, down = apply_relation(classes, plus), apply_relation(classes, minus)
    np.testing.assert_array_equal(up[:, 2], np.minimum(classes[:, 2] + 1, 3))
    np.testing.assert_array_equal(down[:, 2], np.maximum(classes[:, 2] - 1, 0))
    assert set(up[classes[:, 2] == 3, 2]) == {3}
    assert set(down[classes[:, 2] == 0, 2]) == {0}
    for out in (up, down):
        np.testing.assert_array_equal(out[:, :2], classes[:, :2])


# ---------------------------------------------------------------- prior


def _labelled(n: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    classes = np.stack([rng.integers(0, s, n) for s in SIZES], 1)
    classes[: max(SIZES)] = np.arange(max(SIZES))[:, None] % np.array(SIZES)  # every value present
    codes = rng.normal(0, 1, (n, len(SIZES) * P)) + np.repeat(classes, P, axis=1)
    return torch.tensor(codes), classes


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fit_prior_matches_numpy_means_and_scaled_covariances(dtype):
    codes, classes = _labelled()
    prior = fit_prior(codes.to(dtype), classes, SIZES, P, covariance_scale=0.1, eps=1e-4)
    assert prior.factor_sizes == SIZES and prior.partition_size == P
    assert prior.means.dtype == dtype
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    z = codes.numpy()
    for k, size in enumerate(SIZES):
        for v in range(size):
            part = z[classes[:, k] == v, k * P : (k + 1) * P]  # (n_v, P)
            expected_cov = 0.1 * np.cov(part, rowvar=False, ddof=0) + 1e-4 * np.eye(P)
            np.testing.assert_allclose(prior.means[k, v].double(), part.mean(0), atol=tol)
            np.testing.assert_allclose(prior.covariances[k, v].double(), expected_cov, atol=tol)
    assert prior.valid.sum(1).tolist() == list(SIZES)


def test_fit_prior_single_example_value_gets_eps_covariance():
    codes, classes = _labelled()
    classes[:, 2][classes[:, 2] == 3] = 2
    classes[0, 2] = 3  # value 3 of scale has one example
    prior = fit_prior(codes, classes, SIZES, P, eps=1e-3)
    np.testing.assert_allclose(prior.covariances[2, 3], 1e-3 * np.eye(P), atol=1e-12)
    np.testing.assert_allclose(prior.means[2, 3], codes[0, 2 * P :].numpy())


def test_fit_prior_value_without_example_is_an_error_naming_it():
    codes, classes = _labelled()
    classes[:, 1][classes[:, 1] == 2] = 0
    with pytest.raises(ValueError, match="factor 'posX' value 2 has no labelled example"):
        fit_prior(codes, classes, SIZES, P, factor_names=NAMES)
    with pytest.raises(ValueError, match="factor '#1' value 2"):
        fit_prior(codes, classes, SIZES, P)


def test_fit_prior_checks_shapes():
    codes, classes = _labelled()
    with pytest.raises(ValueError, match="codes must be"):
        fit_prior(codes, classes, SIZES, P + 1)
    with pytest.raises(ValueError, match="out of range"):
        fit_prior(codes, classes + 1, SIZES, P)


def test_log_likelihood_matches_multivariate_normal():
    prior = _hand_prior()
    codes = torch.randn(7, len(SIZES) * P, dtype=torch.float64) * 5
    log_p = prior.log_likelihood(codes)
    assert log_p.shape == (7, 3, 4)
    for k, size in enumerate(SIZES):
        part = codes[:, k * P : (k + 1) * P]
        for v in range(size):
            mvn = MultivariateNormal(prior.means[k, v], covariance_matrix=prior.covariances[k, v])
            torch.testing.assert_close(log_p[:, k, v], mvn.log_prob(part))
        assert torch.isneginf(log_p[:, k, size:]).all()  # padded components


def test_classify_picks_most_likely_component_and_thresholds():
    prior = _hand_prior()
    classes = _all_classes()
    at_means = torch.cat(
        [prior.means[k, torch.as_tensor(classes[:, k])] for k in range(len(SIZES))], 1
    )  # (36, K * P)
    predicted, accepted = prior.classify(at_means, THRESHOLD)
    np.testing.assert_array_equal(predicted, classes)
    assert predicted.dtype == np.int64 and accepted.all()
    far = at_means.clone()
    far[:5, P : 2 * P] += 1000.0  # partition 1 far from every component
    _, accepted = prior.classify(far, THRESHOLD)
    assert not accepted[:5, 1].any() and accepted[:5, [0, 2]].all() and accepted[5:].all()


def test_sample_reproduces_component_means_and_is_seeded():
    prior = _hand_prior()
    classes = np.repeat(_all_classes(), 400, axis=0)  # (14400, 3)
    codes = prior.sample(classes, torch.Generator().manual_seed(0))
    assert codes.shape == (len(classes), len(SIZES) * P)
    again = prior.sample(classes, torch.Generator().manual_seed(0))
    torch.testing.assert_close(codes, again)
    for k, size in enumerate(SIZES):
        part = codes[:, k * P : (k + 1) * P]
        for v in range(size):
            rows = torch.as_tensor(classes[:, k] == v)
            std = prior.covariances[k, v].diagonal().sqrt()
            error = (part[rows].mean(0) - prior.means[k, v]).abs()
            assert (error < 4 * std / math.sqrt(int(rows.sum()))).all()
            emp_cov = torch.cov(part[rows].T)
            torch.testing.assert_close(emp_cov, prior.covariances[k, v], atol=0.03, rtol=0.1)
    with pytest.raises(ValueError, match="out of range"):
        prior.sample(np.array([[0, 0, 4]]))


# ---------------------------------------------------------------- relation accuracy


def _exact_map(prior: MixturePrior, relations):
    """Moves the changed partition to the target component's mean, leaves the others."""

    def relational_map(codes: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        source, _ = prior.classify(codes, -math.inf)
        out = codes.clone().reshape(len(codes), len(SIZES), P)
        for r, relation in enumerate(relations):
            rows = (ids == r).numpy()
            target = apply_relation(source[rows], relation)[:, relation.factor]
            out[torch.as_tensor(rows), relation.factor] = prior.means[
                relation.factor, torch.as_tensor(target)
            ]
        return out.reshape(len(codes), -1)

    return relational_map


def test_exact_map_scores_one():
    prior, relations = _hand_prior(), relations_for(NAMES, SIZES, KINDS)
    scores = relation_accuracy(
        prior,
        _exact_map(prior, relations),
        relations,
        2000,
        threshold=THRESHOLD,
        generator=torch.Generator().manual_seed(1),
    )
    assert scores.accepted == 1.0 and scores.accuracy == 1.0
    assert scores.per_relation == {r.name: 1.0 for r in relations}
    assert scores.chance == pytest.approx(1 / 36) == chance_accuracy(SIZES)


def test_random_map_scores_chance():
    prior, relations = _hand_prior(), relations_for(NAMES, SIZES, KINDS)
    other = torch.Generator().manual_seed(7)

    def random_map(codes, ids):
        return prior.sample(prior.sample_classes(len(codes), other), other)

    n = 20000
    scores = relation_accuracy(
        prior,
        random_map,
        relations,
        n,
        threshold=THRESHOLD,
        generator=torch.Generator().manual_seed(2),
    )
    assert scores.accepted > 0.999
    se = math.sqrt(scores.chance * (1 - scores.chance) / n)
    assert abs(scores.accuracy - scores.chance) < 4 * se


def test_identity_map_is_right_only_where_a_saturating_relation_is_at_its_border():
    prior, relations = _hand_prior(), relations_for(NAMES, SIZES, KINDS)
    n = 12000
    scores = relation_accuracy(
        prior,
        lambda codes, ids: codes,
        relations,
        n,
        threshold=THRESHOLD,
        generator=torch.Generator().manual_seed(3),
    )
    assert scores.accepted > 0.999
    assert scores.per_relation["shape+1"] == 0.0 and scores.per_relation["shape-1"] == 0.0
    per_relation_n = n / len(relations)
    for name, size in (("posX+1", 3), ("posX-1", 3), ("scale+1", 4), ("scale-1", 4)):
        p = 1 / size  # the source is at the border the relation saturates against
        se = math.sqrt(p * (1 - p) / per_relation_n)
        assert abs(scores.per_relation[name] - p) < 4 * se, name
    expected = (2 * 0 + 2 / 3 + 2 / 4) / len(relations)
    assert abs(scores.accuracy - expected) < 4 * math.sqrt(expected * (1 - expected) / n)


def test_score_relations_at_the_borders_deterministically():
    prior, relations = _hand_prior(), relations_for(NAMES, SIZES, KINDS)
    by_name = {r.name: i for i, r in enumerate(relations)}
    sources = np.array([[0, 2, 3], [0, 0, 0], [1, 1, 3], [1, 1, 1], [2, 0, 0]])
    ids = np.array(
        [
            by_name["posX+1"],
            by_name["posX-1"],
            by_name["scale+1"],
            by_name["scale+1"],
            by_name["shape+1"],
        ]
    )
    codes = prior.sample(sources, torch.Generator().manual_seed(4))
    identity = score_relations(prior, sources, ids, codes, relations, threshold=THRESHOLD)
    # rows 0-2: saturating relations at their border, target == source, unchanged code is right;
    # row 3: scale 1 -> 2 not done; row 4: shape 2 -> 0 (wrap) not done
    assert identity.accepted == 1.0 and identity.accuracy == pytest.approx(3 / 5)
    assert identity.per_relation["posX+1"] == 1.0 and identity.per_relation["posX-1"] == 1.0
    assert identity.per_relation["scale+1"] == 0.5 and identity.per_relation["shape+1"] == 0.0
    assert math.isnan(identity.per_relation["scale-1"])  # never drawn
    moved = _exact_map(prior, relations)(codes, torch.as_tensor(ids))
    assert score_relations(prior, sources, ids, moved, relations, threshold=THRESHOLD).accuracy == 1
    # changing the right factor but disturbing another partition is wrong
    broken = moved.clone()
    broken[3, :P] = prior.means[0, 2]  # shape 1 -> 2 on a scale relation
    scores = score_relations(prior, sources, ids, broken, relations, threshold=THRESHOLD)
    assert scores.accuracy == pytest.approx(4 / 5) and scores.per_relation["scale+1"] == 0.5


def test_nothing_accepted_gives_nan_accuracy():
    prior, relations = _hand_prior(), relations_for(NAMES, SIZES, KINDS)
    scores = relation_accuracy(
        prior,
        lambda codes, ids: codes + 1000.0,
        relations,
        50,
        threshold=THRESHOLD,
        generator=torch.Generator().manual_seed(5),
    )
    assert scores.accepted == 0.0 and math.isnan(scores.accuracy)
    assert all(math.isnan(v) for v in scores.per_relation.values())


def test_relation_accuracy_is_reproducible_with_the_generator():
    prior, relations = _hand_prior(), relations_for(NAMES, SIZES, KINDS)
    other = torch.Generator().manual_seed(0)

    def noisy_map(codes, ids):
        return codes + torch.randn(codes.shape, generator=other, dtype=codes.dtype) * 3

    runs = []
    for _ in range(2):
        other.manual_seed(0)
        runs.append(
            relation_accuracy(
                prior,
                noisy_map,
                relations,
                500,
                threshold=THRESHOLD,
                generator=torch.Generator().manual_seed(6),
            )
        )
    assert repr(runs[0]) == repr(runs[1])  # repr: NaN != NaN
    assert 0 < runs[0].accepted < 1


# ---------------------------------------------------------------- one grid of relation results


def _grid_outputs(prior, relational_map, codes, n_relations):
    """outputs[i, r] = the map applied to code i with relation r: (N, R, K * P)."""
    ids = torch.arange(n_relations).repeat(len(codes))  # source-major, as the grid
    out = relational_map(codes.repeat_interleave(n_relations, 0), ids)
    return out.reshape(len(codes), n_relations, -1)


def test_relation_targets_apply_each_rows_relation():
    relations = relations_for(NAMES, SIZES, KINDS)
    sources = np.array([[2, 2, 0], [2, 2, 0], [0, 1, 3]])
    targets = relation_targets(sources, np.array([0, 3, 4]), relations)
    np.testing.assert_array_equal(targets, [[0, 2, 0], [2, 1, 0], [0, 1, 3]])
    with pytest.raises(ValueError, match="out of range"):
        relation_targets(sources, np.array([0, 1, 6]), relations)


def test_relation_outcomes_of_an_exact_map_are_all_correct():
    prior, relations = _hand_prior(), relations_for(NAMES, SIZES, KINDS)
    sources = _all_classes()  # every border of every relation included
    codes = prior.sample(sources, torch.Generator().manual_seed(8))
    outputs = _grid_outputs(prior, _exact_map(prior, relations), codes, len(relations))
    outcome = relation_outcomes(prior, sources, outputs, relations)
    assert outcome.correct.shape == (36, 6) and outcome.correct.all()
    np.testing.assert_array_equal(outcome.predicted, outcome.targets)
    np.testing.assert_array_equal(
        outcome.targets[:, 1], relation_targets(sources, [1] * 36, relations)
    )
    # row 0 is (0, 0, 0): shape wraps, posX and scale saturate at -1
    np.testing.assert_array_equal(
        outcome.targets[0], [[1, 0, 0], [2, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1], [0, 0, 0]]
    )


def test_relation_outcomes_mark_what_a_broken_map_gets_wrong():
    prior, relations = _hand_prior(), relations_for(NAMES, SIZES, KINDS)
    by_name = {r.name: i for i, r in enumerate(relations)}
    sources = np.array([[0, 1, 1], [1, 2, 3], [2, 0, 2]])
    codes = prior.sample(sources, torch.Generator().manual_seed(9))
    exact = _exact_map(prior, relations)

    def broken(codes, ids):
        """Exact, except: shape+1 does nothing, and posX-1 also moves scale to value 0."""
        out = exact(codes, ids)
        shape_plus = ids == by_name["shape+1"]
        out[shape_plus] = codes[shape_plus]
        pos_minus = ids == by_name["posX-1"]
        out[pos_minus, 2 * P : 3 * P] = prior.means[2, 0]
        return out

    outcome = relation_outcomes(
        prior, sources, _grid_outputs(prior, broken, codes, len(relations)), relations
    )
    expected = np.ones((3, 6), bool)
    expected[:, by_name["shape+1"]] = False
    expected[:, by_name["posX-1"]] = False  # no source has scale 0 (row 2: posX saturates)
    np.testing.assert_array_equal(outcome.correct, expected)
    # the converted code is the source's for the no-op, and scale 0 for the spilled move
    np.testing.assert_array_equal(outcome.predicted[:, by_name["shape+1"]], sources)
    np.testing.assert_array_equal(outcome.predicted[1, by_name["posX-1"]], [1, 1, 0])
    # a scrambled map is wrong nearly everywhere
    generator = torch.Generator().manual_seed(3)
    random_codes = prior.sample(prior.sample_classes(18, generator), generator)
    noise = relation_outcomes(prior, sources, random_codes.reshape(3, 6, -1), relations)
    assert noise.correct.mean() < 0.5


def test_relation_outcomes_check_shapes():
    prior, relations = _hand_prior(), relations_for(NAMES, SIZES, KINDS)
    sources = np.zeros((2, 3), np.int64)
    with pytest.raises(ValueError, match="outputs must be"):
        relation_outcomes(prior, sources, torch.zeros(2, 5, 9, dtype=torch.float64), relations)
    with pytest.raises(ValueError, match="source classes"):
        relation_outcomes(prior, sources[:, :2], torch.zeros(2, 6, 9), relations)
