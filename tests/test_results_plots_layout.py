"""Plots people can read: no panel title runs into the axis labels above it, legends sit off the
curves, and curves against alpha join only runs that differ in alpha alone."""
import matplotlib.pyplot as plt
import pytest
from test_experiments_runner import FakePipeline

from divqat.experiments.config import parse_config
from divqat.experiments.runner import run_experiment
from divqat.results import plots

RAW = {"name": "plots", "seeds": [0, 1], "data": {"victim": "digits", "queryset": "digits"},
       "victim": {"arch": "lenet5", "epochs": 1}, "quant": {"epochs": 1},
       "methods": [{"name": "qat"}, {"name": "divqat", "alpha": [0.5, 2.0], "direction": ["forward", "reverse"]},
                   {"name": "divqat", "alpha": 2.0, "kl_cap": 1.0}],
       "defenses": [{"name": "none"}],
       "attacks": [{"name": "knockoff", "budget": 100, "epochs": e} for e in (5, 10, 20, 30)]}


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """{file name: the figure plots.py saved}, from a grid run with the test pipeline."""
    from divqat.results.aggregate import collect

    out = tmp_path_factory.mktemp("grid")
    run_experiment(parse_config(RAW), out, pipeline=FakePipeline(), progress=False, report=False)
    saved = {}
    original = plots._save
    plots._save = lambda fig, path: saved.setdefault(path.name, fig)
    try:
        plots.write_plots(collect(out), out)
    finally:
        plots._save = original
    yield saved
    for fig in saved.values():
        plt.close(fig)


def _extent(artist):
    return artist.get_window_extent()


def test_titles_clear_the_panel_above(figures):
    fig = figures["error_vs_alpha.png"]
    fig.canvas.draw()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4  # two rows of panels
    rows = sorted({round(ax.get_position().y0, 3) for ax in axes}, reverse=True)
    assert len(rows) == 2
    upper = [ax for ax in axes if round(ax.get_position().y0, 3) == rows[0]]
    lower = [ax for ax in axes if round(ax.get_position().y0, 3) == rows[1]]
    for top in upper:
        label = top.xaxis.label.get_window_extent()
        for bottom in lower:
            assert not _extent(bottom.title).overlaps(label)


@pytest.mark.parametrize("name", ["error_vs_alpha.png", "kl_vs_alpha.png", "robustness.png"])
def test_legends_cover_no_panel(figures, name):
    fig = figures[name]
    fig.canvas.draw()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    assert legends
    for legend in legends:
        for ax in fig.axes:
            if ax.get_visible():
                assert not _extent(legend).overlaps(ax.get_window_extent()), (name, ax.get_title())


def test_alpha_curves_join_only_runs_that_differ_in_alpha(figures):
    ax = figures["kl_vs_alpha.png"].axes[0]
    curves = {bars.get_label(): list(bars.lines[0].get_xdata()) for bars in ax.containers}  # errorbar curves
    # QAT (alpha 0) starts each curve; the capped run is a curve of its own, not a jump at alpha 2
    assert curves == {"forward": [0.0, 0.5, 2.0], "forward, kl_cap=1.0": [0.0, 2.0], "reverse": [0.0, 0.5, 2.0]}


def test_series_names():
    row = {"method": "divqat", "direction": "forward", "method_alpha": 4.0, "method_kl_cap": 1.0,
           "method_temperature": 2.0, "method_direction": "forward"}
    assert plots._series(row) == "forward, kl_cap=1.0, temperature=2.0"
    assert plots._series({"method": "divqat", "direction": "reverse", "method_alpha": 1.0}) == "reverse"


def test_tradeoff_points_are_the_undefended_mean_plus_paired_differences():
    def cell(seed, label, error, accuracy):
        return {"victim_label": "qat", "attack_label": "knockoff", "budget": 5000, "seed": seed,
                "defense": label.split("(")[0], "defense_label": label, "adversary_error": error,
                "victim_accuracy": accuracy}

    cells = [cell(s, "none", e, 0.97) for s, e in enumerate([0.20, 0.30, 0.40])]
    cells += [cell(s, "dcp(beta=0.5)", e, a) for s, (e, a) in enumerate([(0.50, 0.96), (0.70, 0.97), (0.60, 0.95)])]
    cells.append(cell(7, "dcp(beta=0.5)", 0.99, 0.10))  # no undefended seed 7: not paired, not drawn
    none, dcp = plots.tradeoff_points(cells, "qat", "dcp", "knockoff", 5000)
    assert none == ("none", pytest.approx((30.0, 97.0)), ((0, 0), (0, 0)))
    diffs = [30.0, 40.0, 20.0]  # thief's error, points, seed by seed
    mean, sd = 30.0, 10.0
    half = 0.95 * (2 / (4 * 0.975 * 0.025)) ** 0.5 * sd / 3 ** 0.5  # t_{0.975, 2} in closed form
    assert sum(diffs) / 3 == mean
    assert dcp[0] == "β=0.5" and dcp[1] == pytest.approx((30.0 + mean, 97.0 + (-1 + 0 - 2) / 3))
    assert dcp[2][0] == pytest.approx((half, half))
