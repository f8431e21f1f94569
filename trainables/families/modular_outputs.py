"""What the modular auto-encoder declares (``Trainer.outputs`` / ``pictures``): the outputs of its
``test_metrics`` besides the registered metrics, and the pictures a report shows of its runs.
Chance and threshold are references, not scores: no direction."""

from __future__ import annotations

from ..core.outputs import Output
from ._autoencoder import DECODER_PICTURES, RECONSTRUCTION_OUTPUTS

UNIT = (0.0, 1.0)

OUTPUTS = (
    *RECONSTRUCTION_OUTPUTS,
    Output("relation_accuracy", True, UNIT, "relational outputs the prior classifies as the "
           "expected factor values, of those it accepts (Table 1)", primary=True),
    Output("relation_accepted", True, UNIT, "relational outputs whose every partition passes "
           "the prior's likelihood threshold", primary=True),
    Output("relation_chance", None, UNIT, "relation accuracy of a uniform guess", primary=True),
    Output("converted_dci_disentanglement", True, UNIT, "DCI disentanglement of the test codes "
           "classified by the prior (Table 2)", primary=True),
    Output("converted_mig", True, UNIT, "MIG of the prior-classified test codes", primary=True),
    Output("converted_sap", True, UNIT, "SAP of the prior-classified test codes", primary=True),
    Output("prior_self_accuracy", True, UNIT, "the prior's own samples classified back to their "
           "components: the ceiling of the relation accuracy"),
    Output("converted_accuracy", True, UNIT, "test codes whose every partition the prior "
           "classifies right"),
    Output("relation_threshold", None, None, "the acceptance threshold (log-likelihood)",
           detail=True),
    Output("relation_accuracy_*", True, UNIT, "relation accuracy of one relation", detail=True),
    Output("converted_accuracy_*", True, UNIT, "one factor classified right", detail=True),
    Output.metric_prefix("converted_", "a registered metric on the prior-classified test codes"),
)  # fmt: skip

PICTURES = ("relations.png", *DECODER_PICTURES)
