"""What every registered family must do, parametrised over ``FAMILIES``: a new family gets these
tests for free (defaults, a short fit, exact resume, saved model, pictures, re-scoring). The checks
are ``trainables.testing``'s, the ones a user's family calls from its own tests; nothing here names
a family: each declares its tiny config (``Trainer.tiny_config``) and whether it is a probe."""

from __future__ import annotations

import pytest
import torch

from trainables import FAMILIES, LocalContext, get_family
from trainables.testing import (
    TINY_VIEW,
    check_config,
    check_fit,
    check_learns,
    check_resume,
    tiny_config,
    tiny_data,
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The tiny data (images, tasks) and one saved tiny upstream model, made once for the module."""
    data, upstream = tiny_data("task_probe", tmp_path_factory.mktemp("shared"))
    return data, upstream


def _data(name, shared):
    family = get_family(name)
    data, upstream = shared
    if family.trainer.is_probe:
        return data, upstream
    return family.prepare_data(TINY_VIEW, [tiny_config(family)]), None


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_defaults_validate_and_expansions_are_trials(
    name,
):  # no data: probes default to ground truth
    check_config(name)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_short_fit_reports_finite_losses_saves_model_and_pictures(name, shared, tmp_path):
    data, upstream = _data(name, shared)
    check_fit(name, data, tmp_path, upstream)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_killed_and_resumed_fit_equals_uninterrupted(name, shared, tmp_path):
    data, upstream = _data(name, shared)
    check_resume(name, data, tmp_path, upstream)


TRAINING = sorted(name for name in FAMILIES if get_family(name).trainer.trains)
NOT_TRAINING = sorted(set(FAMILIES) - set(TRAINING))  # declared: an encoder from elsewhere


@pytest.mark.parametrize("name", TRAINING)
def test_loss_falls_over_a_short_run(name, shared, tmp_path):
    data, upstream = _data(name, shared)
    check_learns(name, data, tmp_path, upstream)


@pytest.mark.parametrize("name", NOT_TRAINING)
def test_a_family_that_does_not_train_has_no_loss_to_check(name, shared, tmp_path):
    data, upstream = _data(name, shared)
    with pytest.raises(ValueError, match="trains = False"):
        check_learns(name, data, tmp_path, upstream)


@pytest.fixture
def data(shared):
    return _data("vae", shared)[0]


def _config(name, **overrides):
    return tiny_config(name, **overrides)


def test_non_finite_loss_ends_the_trial_with_a_reason(data, tmp_path):
    from trainables import NonFiniteLoss

    cfg = _config("vae", lr=1e30)  # the first step explodes the weights
    with pytest.raises(NonFiniteLoss, match="non-finite loss term"):
        get_family("vae").fit(cfg, data, LocalContext(tmp_path))


def test_step_mode_continues_batches_across_epochs(data, tmp_path):
    # 72 train rows, batch 8: 9 steps per epoch; 12 steps run into the second epoch.
    cfg = _config("ae", steps=12, report_every=12)
    ctx = LocalContext(tmp_path)
    get_family("ae").fit(cfg, data, ctx)
    assert ctx.reports[0]["epoch"] == pytest.approx(12 / 9)
    assert ctx.reports[0]["step"] == 12


def test_a_metric_name_mlflow_would_refuse_fails_at_once(tmp_path):
    ctx = LocalContext(tmp_path)
    with pytest.raises(ValueError, match="MLflow allows only"):
        ctx.report({"relation_accuracy_shape+1": 0.5}, step=1)
    ctx.report({"relation_accuracy_shape_plus1": 0.5, "val/loss": 1.0}, step=1)
    assert ctx.steps == [1]
