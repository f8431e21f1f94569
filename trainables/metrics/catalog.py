"""The metric registry and its evaluators (``trainables.metrics`` loads this on first use).

Every evaluator takes a ``MetricInput`` (codes and factor classes with an explicit train/test split,
and for the sampling metrics a ``CodeSource``) and returns final metric names -> floats.
Defaults are disentanglement_lib's study settings (Locatello et al. 2019); ``mode="fast"`` swaps
gradient-boosted trees for histogram boosting where a metric uses them.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..registry import Registry
from . import beta_vae as _beta_vae
from . import dci as _dci
from . import dci_es as _dci_es
from . import downstream as _downstream
from . import factor_vae as _factor_vae
from . import infomec as _infomec
from . import irs as _irs
from . import mig as _mig
from . import modularity as _modularity
from . import sap as _sap
from . import spearman_match as _spearman_match
from . import unsupervised as _unsupervised
from ._checks import check_codes_factors
from ._sources import CodeSource
from .names import BUILTIN_METRICS, GROUP, SAMPLED


@dataclass
class MetricInput:
    codes_train: np.ndarray
    factors_train: np.ndarray
    codes_test: np.ndarray
    factors_test: np.ndarray
    rng: np.random.Generator
    source: CodeSource | None = None
    """Needed by sampling metrics (FactorVAE, BetaVAE) only."""
    n_jobs: int = 1
    mode: str = "reference"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per metric keyword options (a config's ``metric_options``)."""
    matrices: dict[str, np.ndarray] = field(default_factory=dict)
    """Filled by evaluators: matrices worth saving beside the scalars (DCI importance, MIG MI)."""


@dataclass(frozen=True)
class MetricSpec:
    evaluate: Callable[[MetricInput], dict[str, float]]
    outputs: tuple[str, ...]
    higher_is_better: bool | None = True
    bounds: tuple[float, float] = (0.0, 1.0)
    needs_source: bool = False
    options: tuple[str, ...] = ()
    """Keyword options a config may pass (``metric_options``)."""
    draws: bool = True
    """Draws from ``MetricInput.rng``. Metrics that do not may run beside those that do without
    changing any number; the ones that do run one after another, in the order asked."""


def _keyword_options(function: Callable, exclude: tuple[str, ...] = ("rng", "corrected")) -> tuple:
    return tuple(
        name
        for name, p in inspect.signature(function).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in exclude
    )


def _mig_eval(x: MetricInput) -> dict[str, float]:
    mi = _mig.mutual_information_matrix(x.codes_train, x.factors_train, **x.options.get("mig", {}))
    x.matrices["mig_mutual_information"] = mi
    return {"mig": _mig.mig_from_mutual_information(mi, x.factors_train)}


def _sap_eval(x: MetricInput) -> dict[str, float]:
    scores = _sap.sap(x.codes_train, x.factors_train, x.codes_test, x.factors_test, n_jobs=x.n_jobs)
    return {"sap": scores}


def _sap_continuous_eval(x: MetricInput) -> dict[str, float]:
    return {"sap_continuous": _sap.sap(x.codes_train, x.factors_train, continuous=True)}


def _dci_eval(x: MetricInput) -> dict[str, float]:
    scores, importance = _dci.dci_with_importance(
        x.codes_train, x.factors_train, x.codes_test, x.factors_test,
        rng=x.rng, n_jobs=x.n_jobs, mode=x.mode, **x.options.get("dci", {}),
    )  # fmt: skip
    x.matrices["dci_importance"] = importance
    return {
        "dci_disentanglement": scores.disentanglement,
        "dci_completeness": scores.completeness,
        "dci_informativeness_train": scores.informativeness_train,
        "dci_informativeness_test": scores.informativeness_test,
        "dci_informativeness": scores.informativeness_test,
    }


def _modularity_eval(x: MetricInput) -> dict[str, float]:
    explicit = _modularity.explicitness(
        x.codes_train, x.factors_train, x.codes_test, x.factors_test
    )
    return {
        "modularity": _modularity.modularity(x.codes_train, x.factors_train),
        "explicitness_train": explicit.train,
        "explicitness_test": explicit.test,
        "explicitness": explicit.test,
    }


def _require_source(x: MetricInput, name: str) -> CodeSource:
    if x.source is None:
        raise InputError(
            f"{name} samples batches with one factor fixed: it needs a dataset and an encoder, "
            "or codes covering the whole factor grid"
        )
    return x.source


def _factor_vae_eval(x: MetricInput, corrected: bool = False) -> dict[str, float]:
    suffix = "_corrected" if corrected else ""
    name = f"factor_vae{suffix}"
    scores = _factor_vae.factor_vae(
        _require_source(x, name), rng=x.rng, corrected=corrected, **x.options.get(name, {})
    )
    return {
        f"{name}_train": scores.train_accuracy,
        f"{name}_eval": scores.eval_accuracy,
        name: scores.eval_accuracy,
        f"{name}_active_dims": float(scores.num_active_dims),
    }


def _beta_vae_eval(x: MetricInput) -> dict[str, float]:
    scores = _beta_vae.beta_vae(
        _require_source(x, "beta_vae"), rng=x.rng, **x.options.get("beta_vae", {})
    )
    return {
        "beta_vae_train": scores.train_accuracy,
        "beta_vae_eval": scores.eval_accuracy,
        "beta_vae": scores.eval_accuracy,
    }


def _unsupervised_eval(x: MetricInput) -> dict[str, float]:
    return dict(_unsupervised.unsupervised(x.codes_train)._asdict())


_SHORT = {"logistic_regression": "lr", "boosted_trees": "gbt"}


def _downstream_eval(predictor: str) -> Callable[[MetricInput], dict[str, float]]:
    def evaluate(x: MetricInput) -> dict[str, float]:
        accuracy = _downstream.downstream(
            x.codes_train, x.factors_train, x.codes_test, x.factors_test,
            predictor=predictor, rng=x.rng, n_jobs=x.n_jobs,
        )  # fmt: skip
        return {f"downstream_{_SHORT[predictor]}_{n}": v for n, v in accuracy.items()}

    return evaluate


def _downstream_outputs(predictor: str) -> tuple[str, ...]:
    return tuple(f"downstream_{_SHORT[predictor]}_{n}" for n in _downstream.TRAIN_SIZES)


def _irs_eval(x: MetricInput) -> dict[str, float]:
    scores = _irs.irs(x.codes_train, x.factors_train, **x.options.get("irs", {}))
    x.matrices["irs_matrix"] = scores.irs_matrix
    return {"irs": scores.avg_score, "irs_active_dims": float(scores.num_active_dims)}


def _infomec_eval(x: MetricInput) -> dict[str, float]:
    scores = _infomec.infomec(
        x.codes_train, x.factors_train, rng=x.rng, **x.options.get("infomec", {})
    )
    x.matrices["infomec_nmi"] = scores.nmi
    return {"infom": scores.infom, "infoe": scores.infoe, "infoc": scores.infoc}


def _dci_es_eval(x: MetricInput) -> dict[str, float]:
    scores = _dci_es.dci_es(
        x.codes_train, x.factors_train, x.codes_test, x.factors_test,
        rng=x.rng, n_jobs=x.n_jobs, **x.options.get("dci_es", {}),
    )  # fmt: skip
    x.matrices["dci_es_curves"] = scores.curves
    return {"dci_es_explicitness": scores.explicitness, "dci_es_size": scores.size}


def _spearman_match_eval(x: MetricInput) -> dict[str, float]:
    # On the test codes, as the paper's Table 7 (its representations of the test splits); the
    # train split is checked too, so a NaN anywhere in what was scored is an error.
    check_codes_factors(x.codes_train, x.factors_train)
    match = _spearman_match.spearman_match(
        x.codes_test, x.factors_test, **x.options.get("spearman_match", {})
    )
    x.matrices["spearman_rho"] = match.rho
    return {"spearman_factors": float(match.factors_found), "spearman_rho": match.mean_rho}


_UNBOUNDED = (0.0, float("inf"))

_BUILTIN_METRICS: dict[str, MetricSpec] = {
    "mig": MetricSpec(_mig_eval, ("mig",), options=_keyword_options(_mig.mig), draws=False),
    "sap": MetricSpec(_sap_eval, ("sap",), draws=False),
    "sap_continuous": MetricSpec(_sap_continuous_eval, ("sap_continuous",), draws=False),
    "dci": MetricSpec(
        _dci_eval,
        (
            "dci_disentanglement",
            "dci_completeness",
            "dci_informativeness_train",
            "dci_informativeness_test",
            "dci_informativeness",
        ),
        options=("estimator",),
    ),
    "modularity": MetricSpec(
        _modularity_eval,
        ("modularity", "explicitness_train", "explicitness_test", "explicitness"),
        draws=False,
    ),
    "factor_vae": MetricSpec(
        _factor_vae_eval,
        ("factor_vae_train", "factor_vae_eval", "factor_vae", "factor_vae_active_dims"),
        bounds=_UNBOUNDED,  # active dims is a count
        needs_source=True,
        options=_keyword_options(_factor_vae.factor_vae),
    ),
    "factor_vae_corrected": MetricSpec(
        lambda x: _factor_vae_eval(x, corrected=True),
        (
            "factor_vae_corrected_train",
            "factor_vae_corrected_eval",
            "factor_vae_corrected",
            "factor_vae_corrected_active_dims",
        ),
        bounds=_UNBOUNDED,
        needs_source=True,
        options=_keyword_options(_factor_vae.factor_vae),
    ),
    "beta_vae": MetricSpec(
        _beta_vae_eval,
        ("beta_vae_train", "beta_vae_eval", "beta_vae"),
        needs_source=True,
        options=_keyword_options(_beta_vae.beta_vae),
    ),
    "unsupervised": MetricSpec(
        _unsupervised_eval,
        _unsupervised.UnsupervisedScores._fields,
        higher_is_better=None,
        bounds=_UNBOUNDED,
        draws=False,
    ),
    "irs": MetricSpec(
        _irs_eval,
        ("irs", "irs_active_dims"),
        bounds=(-1.0, float("inf")),  # IRS lies in [-1, 1]; active dims is a count
        options=_keyword_options(_irs.irs),
        draws=False,
    ),
    "infomec": MetricSpec(
        _infomec_eval, ("infom", "infoe", "infoc"), options=_keyword_options(_infomec.infomec)
    ),
    "spearman_match": MetricSpec(
        _spearman_match_eval,
        ("spearman_factors", "spearman_rho"),
        bounds=_UNBOUNDED,  # a count of factors
        options=_keyword_options(_spearman_match.spearman_match),
        draws=False,
    ),
    # Optional (not in study defaults): a sweep of probes per factor, ~5 s at 4,000 points.
    "dci_es": MetricSpec(
        _dci_es_eval,
        ("dci_es_explicitness", "dci_es_size"),
        bounds=_UNBOUNDED,  # size > 1 when there are fewer codes than factors
        options=_keyword_options(_dci_es.dci_es, exclude=("rng", "n_jobs")),
    ),
    "downstream_logistic_regression": MetricSpec(
        _downstream_eval("logistic_regression"), _downstream_outputs("logistic_regression")
    ),
    "downstream_boosted_trees": MetricSpec(
        _downstream_eval("boosted_trees"), _downstream_outputs("boosted_trees")
    ),
}


# How each metric's default is estimated (a run's ``estimator.<metric>`` tag says which was used).
ESTIMATOR_NOTES = {
    "mig": "discrete MI, {n_bins} equal-width bins per code (disentanglement_lib)",
    "sap": "per code-factor pair: balanced accuracy of a one-feature linear SVM (disentanglement_lib)",
    "sap_continuous": "per code-factor pair: R^2 of a one-feature linear regression",
    "dci": "gradient-boosted trees, sklearn defaults, impurity importance (disentanglement_lib)",
    "modularity": "MI with 20 equal-width bins; explicitness: one-vs-rest logistic regression AUC",
    "factor_vae": "majority vote over the code of least normalised variance",
    "factor_vae_corrected": "majority vote, variance normalised on the active codes only",
    "beta_vae": "logistic regression on mean |code difference| of pairs with one factor fixed",
    "unsupervised": "Gaussian total correlation and mutual information of the codes",
    "irs": "interventional robustness, 0.99 quantile of code changes, factors in 20 bins",
    "infomec": "NMI by k-NN (10 neighbours) on standardised codes; InfoE from logistic regression",
    "dci_es": "boosted-tree probes of 1-64 trees, error-rate loss-capacity curve",
    "spearman_match": "each code to its most Spearman-correlated factor (p < 0.05), test codes",
    "downstream_logistic_regression": "5-fold cross-validated logistic regression (disentanglement_lib)",
    "downstream_boosted_trees": "gradient-boosted trees, sklearn defaults (disentanglement_lib)",
}
_MIG_ESTIMATORS = {
    "histogram": ESTIMATOR_NOTES["mig"],
    "quantile": "discrete MI, {n_bins} equal-frequency bins per code",
    "knn": "k-NN MI estimate (3 neighbours, scikit-learn)",
}
_DCI_ESTIMATORS = {
    "boosted_trees": ESTIMATOR_NOTES["dci"],
    "random_forest": "random forest, 100 trees, impurity importance",
    "lasso": "L1 logistic regression (C = 0.1) on standardised codes, mean |coefficient|",
}


def describe_estimator(name: str, options: dict[str, dict[str, Any]] | None = None,
                       mode: str = "reference") -> str:  # fmt: skip
    """How ``name`` was estimated with these ``metric_options`` and ``metric_mode``."""
    chosen = (options or {}).get(name, {})
    if name == "mig":
        text = _MIG_ESTIMATORS[chosen.get("estimator", "histogram")]
        return text.format(n_bins=chosen.get("n_bins", 20))
    if name == "dci":
        text = _DCI_ESTIMATORS[chosen.get("estimator", "boosted_trees")]
        if mode == "fast" and chosen.get("estimator", "boosted_trees") == "boosted_trees":
            text += "; fast mode: the same trees in compiled code, to rounding"
        return text
    return ESTIMATOR_NOTES.get(name, "")


def _not_a_metric(obj: Any) -> str | None:
    if not isinstance(obj, MetricSpec):
        return f"{obj!r} is not a trainables.metrics.MetricSpec"
    if not obj.outputs or not all(isinstance(o, str) and o for o in obj.outputs):
        return "MetricSpec.outputs must name at least one output"
    return None


# The one registry of metrics: the built-ins above, and a user's (``trainables.registry``): by
# dotted path to a MetricSpec, entry point of group disentangle_study.metrics, or decorator.
if set(_BUILTIN_METRICS) != set(BUILTIN_METRICS):  # the names `study list` shows without this module
    raise RuntimeError("names.BUILTIN_METRICS must list exactly catalog._BUILTIN_METRICS' keys")
METRICS: Registry[MetricSpec] = Registry("metric", _BUILTIN_METRICS, group=GROUP, check=_not_a_metric)


def register_metric(name: str) -> Callable[[MetricSpec], MetricSpec]:
    """``register_metric("mine")(MetricSpec(...))``: a metric under a name of this process."""
    return METRICS.register(name)


def get_metric(name: str) -> MetricSpec:
    """A metric by name or dotted path (``RegistryError``, one line, if none)."""
    return METRICS.get(name)


def run_metrics(
    names: Sequence[str],
    inputs: MetricInput,
    on_start: Callable[[str], None] | None = None,
    on_end: Callable[[str], None] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Evaluate ``names`` on ``inputs``: (scores in the order asked, wall seconds per metric).

    With more than one job, the metrics that draw nothing from the shared RNG run one after
    another on a side thread (one job each) while the others run here in order, so each score is
    what a sequential run gives. The metrics beside DCI are seconds of one core against its
    tens of seconds of tree fitting; their wall seconds then include sharing the cores.
    """
    for name in names:
        get_metric(name)
    seconds: dict[str, float] = {}

    def run(group: list[str], x: MetricInput) -> dict[str, dict[str, float]]:
        out = {}
        for name in group:
            if on_start is not None:
                on_start(name)
            started = time.perf_counter()
            out[name] = METRICS[name].evaluate(x)
            seconds[name] = time.perf_counter() - started
            if on_end is not None:
                on_end(name)
        return out

    free = [n for n in names if not METRICS[n].draws]
    drawing = [n for n in names if METRICS[n].draws]
    if inputs.n_jobs == 1 or not free or not drawing:
        by_name = run(list(names), inputs)
    else:
        # One job beside: the calling thread's metrics already spread over n_jobs. The copy
        # shares ``matrices`` (and everything else) with ``inputs``.
        single = dataclasses.replace(inputs, n_jobs=1)
        with ThreadPoolExecutor(1, thread_name_prefix="metrics-beside") as side:
            beside = side.submit(run, free, single)
            by_name = run(drawing, inputs)
            by_name.update(beside.result())
    scores: dict[str, float] = {}
    for name in names:
        scores.update(by_name[name])
    return scores, {name: seconds[name] for name in names}


def metric_directions() -> dict[str, bool | None]:
    """Every registered metric's outputs and their directions (``higher_is_better``): what a
    launch records in its runs' tag, so readers need not load this registry."""
    return {o: higher_is_better(o) for spec in METRICS.values() for o in spec.outputs}


def higher_is_better(output: str) -> bool | None:
    """Direction of a registered metric's output, or None if unknown or not a score (counts, TC).

    A family's own outputs (errors, relation scores) are declared by the family
    (``Trainer.outputs``, ``trainables.core.outputs``), not known here.
    """
    output = output.removesuffix(SAMPLED)
    if output.endswith("_active_dims") or output == "dci_es_size":
        return None  # counts, and DCI-ES's size ratio (a property, not a score)
    for spec in METRICS.values():
        if output in spec.outputs:
            return spec.higher_is_better
    return None


