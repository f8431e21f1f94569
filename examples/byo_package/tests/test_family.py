"""The package's family keeps the study system's contract: one call to its public check."""

from trainables.testing import check_family


def test_mlp_ae_keeps_the_contract(tmp_path):
    check_family("byo.models:MLPAutoEncoder", tmp_path)
