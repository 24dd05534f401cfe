"""`divqat bench`: the table it prints, its argument errors, and that its eager baselines
compute what the fused ops compute (so the speed-ups compare equal work)."""
import pytest
import torch

from divqat import bench, cli
from divqat.ops import div_kl_loss, divqat_loss


def test_bench_prints_every_op(capsys):
    assert cli.main(["bench", "--rows", "8", "--cols", "5", "--fq-size", "8", "--repeats", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "logits 8x5" in lines[0] and "fake_quant 8x8" in lines[0]
    for name in ("div_kl_loss", "divqat_loss", "fake_quant per-tensor", "fake_quant per-channel", "LSQ per-tensor"):
        row = next(line for line in lines[2:] if name in line)
        speedup = row.split()[-2]
        assert speedup.endswith("x") and float(speedup[:-1]) > 0
    assert len(lines) == 7


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rows", "0"], "--rows"),
        (["--repeats", "-1"], "--repeats"),
        (["--fq-size", "0"], "--fq-size"),
        (["--device", "tpu"], "device"),
    ],
)
def test_bench_bad_arguments(capsys, argv, message):
    assert cli.main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_eager_baselines_match_the_fused_ops():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 9, generator=g, dtype=torch.float64), torch.randn(6, 9, generator=g, dtype=torch.float64)
    y = torch.randint(0, 9, (6,), generator=g)
    torch.testing.assert_close(bench.eager_div_kl(s, t, 2.0), div_kl_loss(s, t, 2.0))
    torch.testing.assert_close(bench.eager_divqat(s, t, y, 0.3, 2.0), divqat_loss(s, t, y, 0.3, 2.0))


def test_median_ms_is_the_median_of_the_runs(monkeypatch):
    clock = iter([0.0, 0.001, 1.0, 1.005, 2.0, 2.003])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    assert bench.median_ms(lambda: None, torch.device("cpu"), repeat=3, warmup=0) == pytest.approx(3.0)
