"""Names every part of the metrics package shares: modes, the sampled-codes suffix, aliases.

Plain data, imported by the package and by its registry (``catalog``) alike.
"""

from __future__ import annotations

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
