"""--plot of eval and compare, and bench_compress's trade-off plot: valid PNG files with the expected
panels, written atomically and deterministically; without matplotlib, one line naming the extra."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_measures import synthetic

from vecpipe.errors import ExtraError
from vecpipe.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXTRA_LINE = "vecpipe: error: --plot draws with matplotlib, which is not installed: pip install 'vecpipe[plot]'\n"


def _need_matplotlib():
    return pytest.importorskip("matplotlib", reason="matplotlib (the [plot] extra) is not installed")


def _check_png(path: Path) -> np.ndarray:
    _need_matplotlib()
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000
    img = matplotlib.image.imread(str(path))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert float(img[..., :3].std()) > 0.01  # something is drawn, not a blank image
    return img


@pytest.fixture
def files(tmp_path):
    """Qrels and three runs over them: the synthetic run, the same with noise, the same with shuffled scores."""
    run, qrels = synthetic(5)
    rng = np.random.default_rng(6)
    s = run["score"].to_numpy()
    noisy = np.where(np.isfinite(s), s + rng.normal(0, 0.3, len(s)), s)
    tables = [run, run.set_column(2, "score", pa.array(noisy, pa.float32())),
              run.set_column(2, "score", pa.array(s[rng.permutation(len(s))], pa.float32()))]
    paths = []
    for name, t in zip("abc", tables):
        paths.append(tmp_path / f"{name}.parquet")
        pq.write_table(t, paths[-1])
    pq.write_table(qrels, tmp_path / "qrels.parquet")
    return tmp_path / "qrels.parquet", paths


@pytest.fixture
def figures(monkeypatch):
    """Records every figure the stages turn into PNG bytes (the hook the panel counts read)."""
    from vecpipe.evaluate import plots

    seen: list = []
    real = plots.png_bytes

    def recording(fig):
        seen.append(fig)
        return real(fig)

    monkeypatch.setattr(plots, "png_bytes", recording)
    return seen


def test_eval_figure_has_one_panel_per_measure():
    _need_matplotlib()
    from vecpipe.evaluate.plots import eval_figure, png_bytes

    run, qrels = synthetic(5)
    for names in (["nDCG@10"], ["nDCG@10", "R@100", "AP", "NumRet"], ["nDCG@10", "R@100", "AP", "P@5", "SetP", "RR"]):
        fig = eval_figure(evaluate(run, qrels, names))
        assert [ax.get_title() for ax in fig.axes] == names
        assert png_bytes(fig)[:8] == PNG_SIGNATURE


def test_eval_plot_cli(cli, files, tmp_path, figures):
    qrels, [a, *_] = files
    out, plot = tmp_path / "m.tsv", tmp_path / "eval.png"
    args = ["eval", a, "--qrels", qrels, "-m", "nDCG@10", "-m", "R@100", "-m", "AP", "-o", out]
    res = cli(*args, "--plot", plot)
    assert res.exit_code == 0, res.stderr
    _check_png(plot)
    assert len(figures) == 1 and [ax.get_title() for ax in figures[0].axes] == ["nDCG@10", "R@100", "AP"]
    first = plot.read_bytes()
    metrics = out.read_text()
    plot.unlink()
    res = cli(*args, "--plot", plot)  # an up-to-date output does not skip the plot
    assert res.exit_code == 0 and "up to date" not in res.stderr
    assert plot.read_bytes() == first  # deterministic: no timestamp in the PNG
    assert out.read_text() == metrics
    assert not [p.name for p in tmp_path.iterdir() if "vecpipe-tmp" in p.name]
    res = cli(*args)
    assert res.exit_code == 0 and "up to date" in res.stderr


def test_compare_plot_cli(cli, files, tmp_path, figures):
    qrels, paths = files
    plot = tmp_path / "cmp.png"
    res = cli("compare", *paths, "--qrels", qrels, "-m", "nDCG@10", "-m", "R@100", "--plot", plot, "--format", "tsv")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.startswith("run\tmeasure\tvalue")
    _check_png(plot)
    [fig] = figures
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["b.parquet − a.parquet", "c.parquet − a.parquet", "recall@k"]  # a panel per other run, then recall@k
    assert [len(line.get_xdata()) for line in fig.axes[0].get_lines()][:2] == [80, 80]  # every qrels query, per measure
    curves = fig.axes[2].get_lines()
    assert [c.get_label() for c in curves] == ["a.parquet", "b.parquet", "c.parquet"]
    res = cli("compare", *paths[:2], "--qrels", qrels, "--baseline", "2", "--plot", plot)
    assert res.exit_code == 0, res.stderr
    assert [ax.get_title() for ax in figures[1].axes] == ["a.parquet − b.parquet", "recall@k"]


def test_recall_curve_equals_r_at_k():
    run, qrels = synthetic(7)
    res = evaluate(run, qrels, ["R@1", "R@5", "R@20", "R"], recall_curve=True)
    curve = res.recall_curve
    assert curve is not None and len(curve) == res.max_depth
    for k, name in ((1, "R@1"), (5, "R@5"), (20, "R@20"), (res.max_depth, "R")):
        assert curve[k - 1] == pytest.approx(res.aggregate[name], abs=1e-12)
    assert np.all(np.diff(curve) >= 0)


@pytest.mark.parametrize("cmd", ["eval", "compare"])
def test_plot_without_matplotlib_is_one_line(cli, files, tmp_path, monkeypatch, cmd):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    from vecpipe.evaluate.plots import require

    with pytest.raises(ExtraError):
        require()
    qrels, paths = files
    out, plot = tmp_path / "m.tsv", tmp_path / "p.png"
    runs = [paths[0]] if cmd == "eval" else paths[:2]
    res = cli(cmd, *runs, "--qrels", qrels, "--plot", plot, "-o", out)
    assert res.exit_code == 1
    assert res.stderr == EXTRA_LINE
    assert not out.exists() and not plot.exists()


@pytest.mark.parametrize("cmd", ["eval", "compare"])
@pytest.mark.parametrize("case,code,match", [
    ("stdout", 2, "--plot needs a file name"),
    ("svg", 2, "the plot is a PNG image; give a file name ending in .png"),
    ("same-as-output", 2, "is also the -o output"),
    ("directory", 1, "is a directory"),
    ("missing-parent", 1, "does not exist"),
])
def test_bad_plot_paths(cli, files, tmp_path, cmd, case, code, match):
    qrels, paths = files
    out = tmp_path / "m.tsv"
    (tmp_path / "adir").mkdir()
    plot = {"stdout": "-", "svg": str(tmp_path / "p.svg"), "same-as-output": str(out), "directory": str(tmp_path / "adir"),
            "missing-parent": str(tmp_path / "nope" / "p.png")}[case]
    runs = [paths[0]] if cmd == "eval" else paths[:2]
    res = cli(cmd, *runs, "--qrels", qrels, "--plot", plot, "-o", out)
    assert res.exit_code == code, res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("vecpipe: error: ") and match in res.stderr
    assert not out.exists() and not (tmp_path / "p.svg").exists()


def test_bench_compress_tradeoff_plot(tmp_path):
    _need_matplotlib()
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_compress
    finally:
        sys.path.remove(str(ROOT / "bench"))
    rows = [{"method": "float32 Flat", "bytes/vec": 1536, "queries/s": 900.0, "nDCG@10": 0.645},
            {"method": "int8 (SQ8)", "bytes/vec": 384, "queries/s": 1500.0, "nDCG@10": 0.641},
            {"method": "1-bit sign, Hamming", "bytes/vec": 48, "queries/s": 9000.0, "nDCG@10": 0.52},
            {"method": "1-bit sign, Hamming + rescore x4", "bytes/vec": 48, "queries/s": 3000.0, "nDCG@10": 0.63}]
    path = tmp_path / "tradeoff.png"
    bench_compress.write_plot(rows, path)
    _check_png(path)
    from vecpipe.evaluate.plots import tradeoff_figure

    fig = tradeoff_figure(rows)
    assert len(fig.axes) == 2
    assert [len(ax.collections) for ax in fig.axes] == [4, 4]  # one point per method in each panel
    first = path.read_bytes()
    bench_compress.write_plot(rows, path)
    assert path.read_bytes() == first
