"""Names every part of the metrics package shares: modes, the sampled-codes suffix, aliases.

Plain data, imported by the package and by its registry (``catalog``) alike.
"""

from __future__ import annotations

# The built-in metrics' registry names (``catalog._BUILTIN_METRICS`` holds exactly these, checked
# there), so listing them loads no evaluator.
BUILTIN_METRICS = (
    "mig", "sap", "sap_continuous", "dci", "modularity", "factor_vae", "factor_vae_corrected",
    "beta_vae", "unsupervised", "irs", "infomec", "dci_es", "spearman_match",
    "downstream_logistic_regression", "downstream_boosted_trees",
)  # fmt: skip
GROUP = "disentangle_study.metrics"  # entry-point group of a user package's metrics

MODES = ("reference", "fast")
SAMPLED = "_sampled"  # suffix of the scores of a stochastic encoder's sampled codes

# DESIGN section 6 names -> the split-specific output they repeat (tables show only the former).
ALIASES = {
    "dci_informativeness": "dci_informativeness_test",
    "explicitness": "explicitness_test",
    "factor_vae": "factor_vae_eval",
    "factor_vae_corrected": "factor_vae_corrected_eval",
    "beta_vae": "beta_vae_eval",
}
