"""Study figures: the pure plans on hand-built frames, then each drawing as a real PNG."""

from __future__ import annotations

import struct

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection

from analysis.plots import (
    bar_panels,
    mean_curve,
    picture_panel,
    plot_bar_panels,
    plot_correlation_heatmap,
    plot_learning_curves,
    plot_violins,
    save_png,
    violin_groups,
)
from analysis.stats import metric_rank_correlation
from analysis.tables import summary
from trainables.core.outputs import Declared, Output

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Errors are the families' own outputs: their direction comes from what the runs declare.
DIRECTION = Declared((Output("rmse", False), Output("reconstruction_mse", False))).direction


def png_size(path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, checking the signature on the way."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def runs() -> pd.DataFrame:
    rows = []
    means = {"multi_head": (0.06, 0.9, 0.35, 0.2), "single_task": (0.04, 0.8, 0.25, 0.3)}
    for variant, (mig, info, dis, rmse) in means.items():
        for seed, shift in enumerate((-0.01, 0.0, 0.01)):
            rows.append({
                "run_id": f"{variant}-{seed}", "params.variant": variant, "params.seed": str(seed),
                "metrics.mig": mig + shift, "metrics.dci_informativeness": info + shift,
                "metrics.dci_disentanglement": dis + shift, "metrics.rmse": rmse + shift,
                "metrics.reconstruction_mse": 0.002 + shift / 100,
            })  # fmt: skip
    return pd.DataFrame(rows)


def test_bar_panels_split_scores_by_scale_and_keep_errors_apart(runs):
    panels = bar_panels(summary(runs, ["variant"]), direction=DIRECTION)
    by_metric = {m: i for i, p in enumerate(panels) for m in p.metrics}
    # mig ~0.05 vs informativeness ~0.9: 18x apart, never one panel
    assert by_metric["mig"] != by_metric["dci_informativeness"]
    # disentanglement ~0.3 is within 5x of informativeness, so it shares that panel
    assert by_metric["dci_disentanglement"] == by_metric["dci_informativeness"]
    for error in ("rmse", "reconstruction_mse"):
        assert panels[by_metric[error]].kind == "error"
        assert not {"mig", "dci_informativeness"} & set(panels[by_metric[error]].metrics)
    # rmse ~0.25 and reconstruction_mse ~0.002 are on different scales too
    assert by_metric["rmse"] != by_metric["reconstruction_mse"]
    assert [p.kind for p in panels] == ["score", "score", "error", "error"]
    big = panels[by_metric["dci_informativeness"]]
    assert big.groups == ["multi_head", "single_task"]
    assert big.metrics == ["dci_disentanglement", "dci_informativeness"]  # summary's order
    assert np.allclose(big.means, [[0.35, 0.9], [0.25, 0.8]])
    assert np.allclose(big.stds, 0.01)


def test_bar_panels_explicit_metrics_and_single_runs(runs):
    one_run = runs.groupby("params.variant").head(1)
    table = summary(one_run, ["variant"])
    panels = bar_panels(table, metrics=["mig", "rmse"], direction=DIRECTION)
    assert [p.metrics for p in panels] == [["mig"], ["rmse"]]
    assert np.all(panels[0].stds == 0)  # std of one run is NaN: drawn as no error bar
    with_nan = table.copy()
    with_nan[("mig", "mean")] = np.nan
    assert "mig" not in {m for p in bar_panels(with_nan) for m in p.metrics}


def test_plot_bar_panels_one_axis_per_panel(runs, tmp_path):
    panels = bar_panels(summary(runs, ["variant"]), direction=DIRECTION)
    fig = plot_bar_panels(panels, title="study")
    assert len(fig.axes) == len(panels)
    for ax, panel in zip(fig.axes, panels, strict=True):
        heights = sorted(round(p.get_height(), 6) for p in ax.patches)
        assert heights == sorted(round(v, 6) for v in panel.means.ravel())
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["multi_head", "single_task"]
    width, height = png_size(save_png(fig, tmp_path / "bars.png"))
    assert width > 600 and 300 < height < 2000
    assert not plt.fignum_exists(fig.number)  # save_png closed it
    with pytest.raises(ValueError):
        plot_bar_panels([])


def test_spearman_and_heatmap_annotations(runs, tmp_path):
    ranked = pd.DataFrame({
        "metrics.mig": [0.01, 0.02, 0.03, 0.04], "metrics.dci_informativeness": [0.5, 0.6, 0.8, 0.9],
        "metrics.rmse": [0.9, 0.5, 0.4, 0.1], "metrics.sap": [0.1, 0.2, np.nan, np.nan],
    })  # fmt: skip
    exact = metric_rank_correlation(ranked, ["mig", "dci_informativeness", "rmse"], by=None)["all"]
    assert exact.loc["mig", "dci_informativeness"] == pytest.approx(1.0)
    assert exact.loc["mig", "rmse"] == pytest.approx(-1.0)
    matrix = metric_rank_correlation(runs, ["mig", "dci_informativeness", "rmse"], by=None)["all"]
    matrix.loc["mig", "rmse"] = matrix.loc["rmse", "mig"] = -0.4567
    fig = plot_correlation_heatmap(matrix, title="spearman")
    assert len(fig.axes) == 2  # heatmap + colour bar
    heat = fig.axes[0]
    assert [t.get_text() for t in heat.texts] == [f"{v:.2f}" for v in matrix.to_numpy().ravel()]
    assert "-0.46" in [t.get_text() for t in heat.texts]
    assert heat.images[0].get_clim() == (-1.0, 1.0)
    width, height = png_size(save_png(fig, tmp_path / "sub" / "heat.png"))
    assert 300 < width < 3000 and 300 < height < 3000


def test_heatmap_leaves_nan_cells_blank():
    matrix = pd.DataFrame([[1.0, np.nan], [np.nan, 1.0]], index=["a", "b"], columns=["a", "b"])
    fig = plot_correlation_heatmap(matrix)
    assert [t.get_text() for t in fig.axes[0].texts] == ["1.00", "1.00"]
    plt.close(fig)


def test_violin_groups_drop_nan_and_singletons_in_numeric_order():
    runs = pd.DataFrame({
        "params.variant": ["a", "a", "a", "a", "a", "b", "b", "a", "a"],
        "params.beta": ["10", "10", "10", "2", "2", "2", "2", "4", "4"],
        "metrics.mig": [0.1, 0.2, np.nan, 0.3, 0.4, 0.5, np.nan, 0.6, np.nan],
    })  # fmt: skip
    groups = violin_groups(runs, "mig", ["variant", "beta"])
    # (a, 4) keeps one value and (b, 2) one after NaN is dropped: both gone
    assert [label for label, _ in groups] == ["a / 2", "a / 10"]  # 2 before 10, not as strings
    assert [values.tolist() for _, values in groups] == [[0.3, 0.4], [0.1, 0.2]]
    assert [label for label, _ in violin_groups(runs, "mig", [])] == ["all"]
    assert violin_groups(runs, "mig", [])[0][1].tolist() == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    with pytest.raises(KeyError, match="not logged"):
        violin_groups(runs, "sap", ["beta"])


def test_plot_violins_one_body_per_group_and_every_point(tmp_path):
    groups = [("a", np.array([0.1, 0.2, 0.3])), ("b", np.array([0.5, 0.6]))]
    fig = plot_violins(groups, "mig", title="mig by variant")
    (ax,) = fig.axes
    bodies = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bodies) == 2
    points = np.concatenate(
        [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    )
    assert sorted(points[:, 1].tolist()) == [0.1, 0.2, 0.3, 0.5, 0.6]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert "higher is better" in ax.get_ylabel()
    width, height = png_size(save_png(fig, tmp_path / "violins.png"))
    assert width >= 500 and height >= 400
    with pytest.raises(ValueError):
        plot_violins([], "mig")


def test_mean_curve_over_common_steps_last_value_wins():
    steps, means = mean_curve({
        "r1": [(0, 1.0), (1, 0.8), (2, 0.6), (2, 0.5)],  # step 2 logged twice
        "r2": [(2, 0.7), (0, 3.0), (1, 1.0)],  # out of order
        "r3": [(0, 2.0), (2, 0.3)],  # no step 1
    })  # fmt: skip
    assert steps.tolist() == [0, 2]
    assert np.allclose(means, [2.0, 0.5])
    assert mean_curve({})[0].size == 0


def test_plot_learning_curves_colours_runs_by_group(tmp_path):
    curves = {
        "multi_head": {"r1": [(0, 1.0), (1, 0.5)], "r2": [(0, 0.8), (1, 0.3)]},
        "single_task": {"r3": [(0, 1.2), (1, 0.9)]},
    }
    fig = plot_learning_curves(curves, title="val/rmse", ylabel="val/rmse")
    (ax,) = fig.axes
    assert len(ax.lines) == 3 + 2  # one per run, one mean per group
    mean = next(line for line in ax.lines if line.get_label().startswith("multi_head"))
    assert np.allclose(mean.get_ydata(), [0.9, 0.4]) and list(mean.get_xdata()) == [0, 1]
    colours = {line.get_color() for line in ax.lines if line.get_linewidth() < 1}
    assert colours == {"C0", "C1"}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "multi_head (n=2)",
        "single_task (n=1)",
    ]
    assert ax.get_xlabel() == "step"
    width, height = png_size(save_png(fig, tmp_path / "curves.png"))
    assert width >= 600 and height >= 400


def test_learning_curves_take_the_reports_group_colours_and_whole_steps():
    """A group keeps the colour the bar chart gave it, whatever order the curves come in; the
    step axis shows whole epochs only (not 1.5, 2.5)."""
    curves = {
        "single_task": {"r3": [(1, 1.2), (2, 0.9), (3, 0.7)]},
        "multi_head": {"r1": [(1, 1.0), (2, 0.5), (3, 0.4)]},
    }
    fig = plot_learning_curves(curves, colours={"multi_head": "C0", "single_task": "C1"})
    (ax,) = fig.axes
    by_group = {line.get_label().split(" ")[0]: line.get_color() for line in ax.lines
                if not line.get_label().startswith("_")}  # fmt: skip
    assert by_group == {"single_task": "C1", "multi_head": "C0"}
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_picture_panel_tiles_pngs_with_labels(tmp_path):
    images = []
    for i in range(4):
        path = tmp_path / f"run{i}" / "traversals.png"
        path.parent.mkdir()
        plt.imsave(path, np.random.default_rng(i).random((20, 40)), cmap="gray")
        images.append((f"group {i}", path))
    fig = picture_panel(images, columns=3, title="best run per group")
    assert len(fig.axes) == 4  # 2:1 pictures: 2 rows of 2
    assert [ax.get_title() for ax in fig.axes] == ["group 0", "group 1", "group 2", "group 3"]
    assert all(not ax.axison for ax in fig.axes)
    assert fig.axes[0].images[0].get_array().shape[:2] == (20, 40)
    width, height = png_size(save_png(fig, tmp_path / "panel.png"))
    assert width > height > 200  # 2 tiles wide, 2 rows of 2:1 pictures
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        picture_panel([("x", tmp_path / "nowhere.png")])


def test_a_wide_picture_gets_a_whole_row_at_about_its_own_size(tmp_path):
    """A UMAP strip (a panel per factor, ~1300 x 300 px) is not shrunk three abreast."""
    images = []
    for i in range(3):
        path = tmp_path / f"run{i}" / "umap.png"
        path.parent.mkdir()
        plt.imsave(path, np.random.default_rng(i).random((300, 1300)))
        images.append((f"group {i}", path))
    fig = picture_panel(images, columns=3)
    assert len({ax.get_position().x0 for ax in fig.axes}) == 1  # one column: a row each
    width, _ = png_size(save_png(fig, tmp_path / "panel.png", dpi=110))
    assert width >= 1300
