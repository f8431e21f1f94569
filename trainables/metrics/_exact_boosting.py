"""sklearn's GradientBoostingClassifier (default settings), re-run as compiled code.

DCI spends its life in ``GradientBoostingClassifier().fit``: 100 stages x one depth-3 regression tree
per class, and sklearn's tree builder re-sorts every feature at every node. This module fits the same
model with the same algorithm, but sorts each feature once and keeps the node's samples sorted by
stable partitioning, in numba-compiled loops. What it reproduces, so that trees and importances come
out the same as sklearn's (``tests/metrics_tests/test_exact_boosting.py`` compares them tree by tree):

- inputs cast to float32, as sklearn validates them; features closer than float32 1e-7 count as equal;
- the squared-error split proxy, its strict ``>`` (first best split wins), depth-first node order;
- the splitter's feature order: sklearn draws features with its own xorshift generator seeded once per
  tree from the estimator's RandomState, and tracks constant features across nodes; ties between
  features (duplicated codes) therefore break as in sklearn;
- the prior-based initial raw predictions, the multinomial / binomial negative gradients and the
  one-step Newton leaf values (with the (K-1)/K factor kept by sklearn), learning rate 0.1;
- impurity-based feature importances: mean over non-stump trees, normalised to sum 1.

Sums run in a different order than sklearn's, so values agree to rounding (~1e-12), and a split whose
proxy ties another to the last bit could, in principle, go the other way.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from numba import njit
from scipy.special import logit
from scipy.stats import gmean

N_STAGES = 100
MAX_DEPTH = 3
LEARNING_RATE = 0.1
_RAND_R_MAX = 0x7FFFFFFF  # sklearn.tree._utils.RAND_R_MAX
_FEATURE_THRESHOLD = np.float32(1e-7)
_EPSILON = np.finfo(np.float64).eps
_MAX_NODES = 2 ** (MAX_DEPTH + 1) - 1


class BoostedTrees(NamedTuple):
    classes: np.ndarray
    init_raw: np.ndarray  # (n_trees_per_stage,)
    feature: np.ndarray  # (n_stages, n_trees_per_stage, max_nodes); -1 at leaves
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray  # Newton leaf values, before the learning rate
    feature_importances: np.ndarray  # (n_features,)
    train_raw: np.ndarray  # (n_samples, n_trees_per_stage)


@njit(cache=True, nogil=True)
def _rand_int(low, high, state):
    """sklearn.tree._utils.rand_int: xorshift32 on a uint32 state (kept in an int64 cell)."""
    s = state[0]
    if s == 0:
        s = 1
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    state[0] = s
    return low + (s % (_RAND_R_MAX + 1)) % (high - low)


@njit(cache=True, nogil=True)
def _impurity(target, row, start, end):
    """Squared-error impurity of target[row[start:end]], as sklearn computes it: E[t^2] - E[t]^2."""
    total = 0.0
    total_sq = 0.0
    for p in range(start, end):
        t = target[row[p]]
        total += t
        total_sq += t * t
    n = end - start
    return total_sq / n - (total / n) ** 2


@njit(cache=True, nogil=True)
def _fit_tree(sorted_order, sorted_values, order, values, target, seed, max_depth, feature,
              threshold, left, right, leaf_span, importance, in_left, scratch, scratch_values,
              inverse, gathered, root_proxy, root_pos):  # fmt: skip
    """Grow one regression tree on ``target``; returns its node count.

    ``sorted_order`` (n_features, n_samples) holds, per feature, the samples sorted by that feature
    and ``sorted_values`` their float32 values (read only). ``order`` / ``values`` are the working
    copies: the root's split partitions into them out of place (no per-tree copy), deeper splits in
    place; every node owns the span [start, end) of each row, sorted within the span. Leaf spans are
    valid in ``order[0]`` (in ``sorted_order[0]`` when the root is the only leaf).
    ``root_proxy`` / ``root_pos``: per feature, the root's best split from ``_root_scan``.
    """
    n_features, n_samples = order.shape
    state = np.empty(1, np.int64)
    state[0] = seed
    features = np.arange(n_features)
    constant_features = np.empty(n_features, np.int64)
    # stack of (start, end, depth, parent, is_left, n_constant_features) and the node impurity
    stack = np.empty((_MAX_NODES + 2, 6), np.int64)
    stack_impurity = np.empty(_MAX_NODES + 2)
    stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3], stack[0, 4], stack[0, 5] = (
        0, n_samples, 0, -1, 0, 0,
    )  # fmt: skip
    # sklearn's root holds the samples in index order: sum in that order
    stack_impurity[0] = _impurity(target, np.arange(n_samples), 0, n_samples)
    top = 1
    node_count = 0
    for j in range(n_features):
        importance[j] = 0.0
    while top > 0:
        top -= 1
        start, end, depth = stack[top, 0], stack[top, 1], stack[top, 2]
        parent, is_left, n_known = stack[top, 3], stack[top, 4], stack[top, 5]
        impurity = stack_impurity[top]
        n_node = end - start
        node = node_count
        node_count += 1
        if parent >= 0:
            if is_left:
                left[parent] = node
            else:
                right[parent] = node
        feature[node] = -1
        left[node] = -1
        right[node] = -1
        leaf_span[node, 0] = start
        leaf_span[node, 1] = end
        if depth >= max_depth or n_node < 2 or impurity <= _EPSILON:
            continue
        src_order = sorted_order if node == 0 else order
        src_values = sorted_values if node == 0 else values
        node_sum = 0.0
        row = src_order[0]
        for p in range(start, end):
            node_sum += target[row[p]]

        # The splitter's Fisher-Yates feature draw, constant-feature bookkeeping included.
        best_proxy = -np.inf
        best_pos = end
        best_feature = -1
        best_threshold = 0.0
        f_i = n_features
        n_visited = 0
        n_found = 0
        n_drawn = 0
        n_total = n_known
        while f_i > n_total and (n_visited < n_features or n_visited <= n_found + n_drawn):
            n_visited += 1
            f_j = _rand_int(n_drawn, f_i - n_found, state)
            if f_j < n_known:
                features[n_drawn], features[f_j] = features[f_j], features[n_drawn]
                n_drawn += 1
                continue
            f_j += n_found
            f = features[f_j]
            row = src_order[f]
            vals = src_values[f]
            if vals[end - 1] <= vals[start] + _FEATURE_THRESHOLD:
                features[f_j], features[n_total] = features[n_total], features[f_j]
                n_found += 1
                n_total += 1
                continue
            f_i -= 1
            features[f_i], features[f_j] = features[f_j], features[f_i]
            if node == 0:  # scanned already, for all trees of the stage at once
                p = root_pos[f]
                if p < end and root_proxy[f] > best_proxy:
                    best_proxy = root_proxy[f]
                    best_pos = p
                    best_feature = f
                    a = np.float64(vals[p - 1])
                    b = np.float64(vals[p])
                    best_threshold = a / 2.0 + b / 2.0
                    if best_threshold == b or np.isinf(best_threshold):
                        best_threshold = a
                continue
            # Gather the targets in feature order first: independent loads overlap, the scan
            # below then reads sequentially.
            for p in range(start, end):
                gathered[p] = target[row[p]]
            # Candidate splits sit between neighbours more than FEATURE_THRESHOLD apart (sklearn
            # walks chains of near-equal values; this visits the same positions).
            sum_left = 0.0
            for p_prev in range(start, end - 1):
                sum_left += gathered[p_prev]
                if vals[p_prev + 1] <= vals[p_prev] + _FEATURE_THRESHOLD:
                    continue
                p = p_prev + 1
                sum_right = node_sum - sum_left
                proxy = (
                    sum_left * sum_left * inverse[p - start]
                    + sum_right * sum_right * inverse[end - p]
                )
                if proxy > best_proxy:
                    best_proxy = proxy
                    best_pos = p
                    best_feature = f
                    a = np.float64(vals[p_prev])
                    b = np.float64(vals[p])
                    best_threshold = a / 2.0 + b / 2.0
                    if best_threshold == b or np.isinf(best_threshold):
                        best_threshold = a
        for j in range(n_known):
            features[j] = constant_features[j]
        for j in range(n_known, n_known + n_found):
            constant_features[j] = features[j]
        if best_pos >= end:
            continue

        # Partition the spans, stably, into the left child's samples then the right's: every row
        # when the children will be split again, else row 0 only (leaves need just membership).
        row = src_order[best_feature]
        for p in range(start, end):
            in_left[row[p]] = p < best_pos
        last_row = n_features if depth + 1 < max_depth else 1
        for f in range(last_row):
            if node == 0:  # out of place, from the sorted arrays into the working ones
                src, src_v, dst, dst_v = sorted_order[f], sorted_values[f], order[f], values[f]
                i_l = start
                i_r = best_pos
                for p in range(start, end):
                    s = src[p]
                    go_left = in_left[s]
                    i = i_l if go_left else i_r
                    dst[i] = s
                    dst_v[i] = src_v[p]
                    i_l += go_left
                    i_r += 1 - go_left
                continue
            if f == best_feature:
                continue
            row = order[f]
            vals = values[f]
            # Branch-free: both destinations are written, one cursor advances.
            n_l = start
            n_r = 0
            for p in range(start, end):
                s = row[p]
                v = vals[p]
                go_left = in_left[s]
                row[n_l] = s
                vals[n_l] = v
                scratch[n_r] = s
                scratch_values[n_r] = v
                n_l += go_left
                n_r += 1 - go_left
            for p in range(n_r):
                row[n_l + p] = scratch[p]
                vals[n_l + p] = scratch_values[p]
        row = src_order[best_feature]
        w_l = best_pos - start
        w_r = end - best_pos
        impurity_l = _impurity(target, row, start, best_pos)
        impurity_r = _impurity(target, row, best_pos, end)
        improvement = (n_node / n_samples) * (
            impurity - w_r / n_node * impurity_r - w_l / n_node * impurity_l
        )
        if improvement + _EPSILON < 0.0:  # min_impurity_decrease = 0
            continue
        feature[node] = best_feature
        threshold[node] = best_threshold
        importance[best_feature] += (
            n_node * impurity - w_l * impurity_l - w_r * impurity_r
        ) / n_samples
        n_constant = n_total
        stack[top, 0], stack[top, 1], stack[top, 2] = best_pos, end, depth + 1
        stack[top, 3], stack[top, 4], stack[top, 5] = node, 0, n_constant
        stack_impurity[top] = impurity_r
        top += 1
        stack[top, 0], stack[top, 1], stack[top, 2] = start, best_pos, depth + 1
        stack[top, 3], stack[top, 4], stack[top, 5] = node, 1, n_constant
        stack_impurity[top] = impurity_l
        top += 1
    return node_count


@njit(cache=True, nogil=True)
def _root_scan(sorted_order, sorted_values, targets, inverse, best_proxy, best_pos):
    """The root split search of every tree of a stage in one pass per feature.

    All trees' roots hold every sample in the same sorted order, so one walk serves them all, with
    the per-tree scan's sums in the same order (same values, bit for bit). ``targets``: (n_samples,
    n_trees); out: per (feature, tree) the first best proxy and its split position (n_samples when
    the feature offers no split)."""
    n_features, n_samples = sorted_order.shape
    n_trees = targets.shape[1]
    total = np.zeros(n_trees)
    row = sorted_order[0]
    for p in range(n_samples):
        for k in range(n_trees):
            total[k] += targets[row[p], k]
    sum_left = np.empty(n_trees)
    for f in range(n_features):
        row = sorted_order[f]
        vals = sorted_values[f]
        for k in range(n_trees):
            best_proxy[f, k] = -np.inf
            best_pos[f, k] = n_samples
            sum_left[k] = 0.0
        for p in range(n_samples - 1):
            s = row[p]
            for k in range(n_trees):
                sum_left[k] += targets[s, k]
            if vals[p + 1] <= vals[p] + _FEATURE_THRESHOLD:
                continue
            inverse_left = inverse[p + 1]
            inverse_right = inverse[n_samples - p - 1]
            for k in range(n_trees):
                sl = sum_left[k]
                sr = total[k] - sl
                proxy = sl * sl * inverse_left + sr * sr * inverse_right
                if proxy > best_proxy[f, k]:
                    best_proxy[f, k] = proxy
                    best_pos[f, k] = p + 1


@njit(cache=True, nogil=True)
def _negative_gradient(raw, y, n_classes, out):
    """Per tree k, y_k - p_k (softmax over classes; binary: the logistic of the one raw score).

    Row by row over the (n_trees, n_samples) layout, one exp per entry, as sklearn's
    ``exp(raw - max) / sum``."""
    n_trees, n_samples = raw.shape
    if n_classes == 2:
        for i in range(n_samples):
            out[0, i] = (1.0 if y[i] == 1 else 0.0) - 1.0 / (1.0 + np.exp(-raw[0, i]))
        return
    top = raw[0].copy()
    for k in range(1, n_trees):
        for i in range(n_samples):
            top[i] = max(top[i], raw[k, i])
    norm = np.zeros(n_samples)
    for k in range(n_trees):
        for i in range(n_samples):
            out[k, i] = np.exp(raw[k, i] - top[i])
            norm[i] += out[k, i]
    for k in range(n_trees):
        for i in range(n_samples):
            out[k, i] = (1.0 if y[i] == k else 0.0) - out[k, i] / norm[i]


@njit(cache=True, nogil=True)
def _grow_and_apply(sorted_order, sorted_values, target, y, label, n_classes, seed, max_depth,
                    learning_rate, feature, threshold, left, right, value, importance, raw,
                    order, values, leaf_span, in_left, scratch, scratch_values, inverse,
                    gathered, root_proxy, root_pos):  # fmt: skip
    """One tree: grow it on ``target``, set its Newton leaf values, add them to ``raw`` (this
    tree's column). Touches only this tree's outputs and the given scratch buffers, so the trees of
    a stage can run on concurrent threads. Returns the node count."""
    count = _fit_tree(
        sorted_order, sorted_values, order, values, target, seed, max_depth, feature, threshold,
        left, right, leaf_span, importance, in_left, scratch, scratch_values, inverse, gathered,
        root_proxy, root_pos,
    )  # fmt: skip
    rows = order[0] if count > 1 else sorted_order[0]
    for node in range(count):
        if feature[node] >= 0:
            continue
        start, end = leaf_span[node, 0], leaf_span[node, 1]
        numerator = 0.0
        denominator = 0.0
        for p in range(start, end):
            g = target[rows[p]]
            prob = (1.0 if y[rows[p]] == label else 0.0) - g
            numerator += g
            denominator += prob * (1.0 - prob)
        numerator /= end - start
        denominator /= end - start
        if n_classes > 2:
            numerator *= (n_classes - 1) / n_classes
        update = 0.0 if abs(denominator) < 1e-150 else numerator / denominator
        value[node] = update
        for p in range(start, end):
            raw[rows[p]] += learning_rate * update
    return count


@njit(cache=True, nogil=True)
def _raw_predict(x, init_raw, feature, threshold, left, right, value, learning_rate):  # fmt: skip
    n_stages, n_trees = feature.shape[0], feature.shape[1]
    raw = np.empty((x.shape[0], n_trees))
    for i in range(x.shape[0]):
        for k in range(n_trees):
            total = init_raw[k]
            for stage in range(n_stages):
                node = 0
                while feature[stage, k, node] >= 0:
                    if x[i, feature[stage, k, node]] <= threshold[stage, k, node]:
                        node = left[stage, k, node]
                    else:
                        node = right[stage, k, node]
                total += learning_rate * value[stage, k, node]
            raw[i, k] = total
    return raw


def sorted_features(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, the samples in order of float32 value and those values: (n_features, n_samples)
    each. Computed once per code matrix and shared by every factor's fit."""
    x32 = np.asarray(x, np.float32)
    order = np.argsort(x32, axis=0, kind="stable")
    values = np.take_along_axis(x32, order, axis=0)
    return np.ascontiguousarray(order.T.astype(np.int32)), np.ascontiguousarray(values.T)


def fit(
    x: np.ndarray,
    labels: np.ndarray,
    random_state: int,
    presorted: tuple[np.ndarray, np.ndarray] | None = None,
    tree_pool: ThreadPoolExecutor | None = None,
) -> BoostedTrees:
    """Fit as ``GradientBoostingClassifier(random_state=random_state).fit(x, labels)`` would.

    ``presorted``: ``sorted_features(x)``, to share across fits on the same codes. ``tree_pool``:
    each stage's per-class trees run on it (the result does not depend on it)."""
    classes, y = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError("boosting needs at least 2 classes")
    prior = np.bincount(y, minlength=len(classes)) / len(y)
    eps = np.finfo(np.float64).eps
    if len(classes) == 2:
        init_raw = np.array([logit(np.clip(prior[1], eps, 1 - eps))])
    else:
        prior = np.clip(prior, eps, 1 - eps)
        init_raw = np.log(prior / gmean(prior))
    # One splitter seed per tree, drawn from the estimator's RandomState as sklearn draws them.
    generator = np.random.RandomState(random_state)
    n_trees = len(init_raw)
    seeds = np.array(
        [[generator.randint(0, _RAND_R_MAX) for _ in range(n_trees)] for _ in range(N_STAGES)],
        dtype=np.int64,
    )
    order, values = sorted_features(x) if presorted is None else presorted
    n_samples, n_features = len(y), order.shape[0]
    y = y.astype(np.int64)
    shape = (N_STAGES, n_trees, _MAX_NODES)
    feature, left, right = (np.full(shape, -1, np.int64) for _ in range(3))
    threshold, value = np.zeros(shape), np.zeros(shape)
    tree_importance = np.zeros((N_STAGES, n_trees, n_features))
    node_count = np.zeros((N_STAGES, n_trees), np.int64)
    raw = np.repeat(init_raw[:, None], n_samples, axis=1)  # (n_trees, n_samples)
    neg_gradient = np.empty_like(raw)
    inverse = 1.0 / np.maximum(np.arange(n_samples + 1), 1)
    buffers: queue.SimpleQueue = queue.SimpleQueue()  # one set per tree running at once

    def take_buffer():
        try:
            return buffers.get_nowait()
        except queue.Empty:  # working rows and scratch for one more concurrent tree
            return (
                np.empty_like(order), np.empty_like(values), np.empty((_MAX_NODES, 2), np.int64),
                np.zeros(n_samples, np.int64), np.empty(n_samples, order.dtype),
                np.empty(n_samples, values.dtype), np.empty(n_samples),
            )  # fmt: skip

    def grow(stage: int, k: int) -> None:
        buffer = take_buffer()
        try:
            order_w, values_w, leaf_span, in_left, scratch, scratch_values, gathered = buffer
            node_count[stage, k] = _grow_and_apply(
                order, values, neg_gradient[k], y, k if n_trees > 1 else 1, len(classes),
                seeds[stage, k], MAX_DEPTH, LEARNING_RATE, feature[stage, k],
                threshold[stage, k], left[stage, k], right[stage, k], value[stage, k],
                tree_importance[stage, k], raw[k], order_w, values_w, leaf_span, in_left,
                scratch, scratch_values, inverse, gathered, root_proxy[k], root_pos[k],
            )  # fmt: skip
        finally:
            buffers.put(buffer)

    by_feature_proxy = np.empty((n_features, n_trees))
    by_feature_pos = np.empty((n_features, n_trees), np.int64)
    for stage in range(N_STAGES):
        _negative_gradient(raw, y, len(classes), neg_gradient)
        _root_scan(
            order, values, np.ascontiguousarray(neg_gradient.T), inverse, by_feature_proxy,
            by_feature_pos,
        )  # fmt: skip
        root_proxy = np.ascontiguousarray(by_feature_proxy.T)  # (n_trees, n_features)
        root_pos = np.ascontiguousarray(by_feature_pos.T)
        if tree_pool is None or n_trees == 1:
            for k in range(n_trees):
                grow(stage, k)
        else:  # a stage's trees share only the gradients computed above
            for done in [tree_pool.submit(grow, stage, k) for k in range(n_trees)]:
                done.result()
    relevant = node_count > 1
    importance = np.zeros(n_features)
    if relevant.any():  # as sklearn: mean over non-stump trees, normalised to sum 1
        importance = np.mean(tree_importance[relevant], axis=0, dtype=np.float64)
        importance = importance / importance.sum() if importance.sum() > 0 else importance
    return BoostedTrees(
        classes, init_raw, feature, threshold, left, right, value, importance, raw.T.copy()
    )


def decision_to_labels(model: BoostedTrees, raw: np.ndarray) -> np.ndarray:
    if raw.shape[1] == 1:
        return model.classes[(raw[:, 0] > 0).astype(int)]
    return model.classes[np.argmax(raw, axis=1)]


def predict(model: BoostedTrees, x: np.ndarray) -> np.ndarray:
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    raw = _raw_predict(
        x32, model.init_raw, model.feature, model.threshold, model.left, model.right,
        model.value, LEARNING_RATE,
    )  # fmt: skip
    return decision_to_labels(model, raw)
