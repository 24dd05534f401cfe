"""The objectives aimed at labels: trained-in misinformation (divqat.train.misinformation_objective)
against float64 references and gradcheck, their steps and options, and `divqat train` end to end
with misinform, diverse and the proxy objective on the outlier set (sklearn's digits, tiny)."""
import copy

import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from divqat.cli import main
from divqat.data import load_dataset, outliers
from divqat.models import build_model
from divqat.models.multihead import HeadSelect
from divqat.serving.export import export_defended
from divqat.train import label_selection, load_config, load_victim
from divqat.train.label_selection import HELDOUT_OUTLIER_SEED, screen_metrics, select_setting
from divqat.train.misinformation_objective import away_loss, misinformation_loss
from divqat.train.objectives import Objective, outlier_sink, proxy_loss

pytestmark = pytest.mark.usefixtures("one_thread")
N, C = 12, 10


@pytest.fixture
def small_outlier_set(tmp_path, monkeypatch):
    """A 96-image outlier set in a temporary cache (the real one is 12,000 images)."""
    monkeypatch.setenv("DIVQAT_DATA", str(tmp_path))
    monkeypatch.setattr(outliers, "DEFAULT_COUNT", 96)
    outliers._float_images.cache_clear()
    yield
    outliers._float_images.cache_clear()


def _ref_away(s, k):
    """-log(1 - softmax(s)_k) in float64, straight from the definition."""
    return -torch.log1p(-torch.softmax(s, -1).gather(-1, k[:, None]).squeeze(-1))


def test_away_loss_is_minus_log_one_minus_p_and_stable():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(N, C, generator=g, dtype=torch.float64) * 3
    k = torch.randint(C, (N,), generator=g)
    torch.testing.assert_close(away_loss(s, k), _ref_away(s, k))
    assert torch.autograd.gradcheck(lambda z: away_loss(z, k), s.clone().requires_grad_(True))
    confident = torch.zeros(1, C)
    confident[0, 3] = 60.0  # q_3 = 1 - 9e-27: 1 - q underflows in float32, the logsumexp form does not
    assert torch.isclose(away_loss(confident, torch.tensor([3])), torch.tensor([60.0 - torch.log(torch.tensor(9.0))]))


@pytest.mark.parametrize("distill,temperature,direction", [(0.0, 1.0, "forward"), (1.0, 2.0, "forward"),
                                                           (0.5, 1.0, "reverse")])
def test_misinformation_loss_value_and_gradient_match_float64(distill, temperature, direction):
    g = torch.Generator().manual_seed(1)
    s, t, so, to = (torch.randn(N, C, generator=g, dtype=torch.float64) * 2 for _ in range(4))
    y = torch.randint(C, (N,), generator=g)
    alpha = 0.8

    def reference(s, so):
        lp, lq = F.log_softmax(t / temperature, -1), F.log_softmax(s / temperature, -1)
        if direction == "reverse":
            lp, lq = lq, lp
        kl = temperature**2 * (lp.exp() * (lp - lq)).sum(-1).mean()
        ce = -F.log_softmax(s, -1).gather(-1, y[:, None]).mean()
        return ce + distill * kl + alpha * _ref_away(so, to.argmax(-1)).mean()

    s1, so1 = s.clone().requires_grad_(True), so.clone().requires_grad_(True)
    value = misinformation_loss(s1, t, y, so1, to, alpha, temperature, direction, distill)
    s2, so2 = s.clone().requires_grad_(True), so.clone().requires_grad_(True)
    expected = reference(s2, so2)
    torch.testing.assert_close(value, expected)
    for got, want in zip(torch.autograd.grad(value, (s1, so1)), torch.autograd.grad(expected, (s2, so2))):
        torch.testing.assert_close(got, want)


def test_misinformation_moves_mass_away_from_the_teachers_class():
    so = torch.zeros(4, C, requires_grad=True)
    to = torch.eye(C)[:4] * 5
    (grad,) = torch.autograd.grad(misinformation_loss(torch.zeros(4, C), None, torch.zeros(4, dtype=torch.long),
                                                      so, to, 1.0), so)
    assert (grad[torch.arange(4), torch.arange(4)] > 0).all()  # descent lowers the teacher's class


def test_options_are_checked_and_recorded():
    with pytest.raises(ValueError, match="heads"):
        Objective("diverse", heads=2)
    with pytest.raises(ValueError, match="proxy_source"):
        Objective("proxy", proxy_source="fashion-mnist")
    assert Objective("misinform").extra_source == "glyphs" and Objective("proxy").extra_source == "transforms"
    assert Objective("diverse", heads=5, distill=1.0).signature() == {
        "objective": "diverse", "distill": 1.0, "heads": 5, "proxy_source": "glyphs"}
    assert Objective("proxy").signature() == {"objective": "proxy", "proxy_target": "kl", "distill": 0.0}
    assert Objective("proxy", proxy_source="glyphs").signature()["proxy_source"] == "glyphs"
    with pytest.raises(ValueError, match="proxy_target keep_sink .* proxy_source"):
        Objective("proxy", proxy_target="keep_sink")  # synthesised proxies: no outlier set to name the sink on


def _teacher():
    meta = {"num_classes": C, "in_channels": 1, "image_size": 8, "mean": (0.3,), "std": (0.4,)}
    return build_model("smallcnn", **meta).eval()


@pytest.mark.parametrize("name", ["misinform", "diverse", "proxy"])
def test_steps_train_on_outliers_and_reach_every_parameter(name, small_outlier_set):
    from divqat import quant

    teacher = _teacher()
    objective = Objective(name, distill=1.0, proxy_source="glyphs", heads=3)
    student = quant.prepare_qat(objective.float_student(teacher)).train()
    step = objective.make_step(teacher, 1.0, kl_cap=5.0)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(C, (16,))
    before = copy.deepcopy(student)  # observers move with every forward pass in train mode
    torch.manual_seed(3)
    out = step(student, x, y, 0.5)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["ce"] > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters() if p.requires_grad)
    if name == "misinform":  # the step is the loss on the outliers the generator draws
        torch.manual_seed(3)
        extra = outliers.outlier_batch(x)
        with torch.no_grad():
            logits, extra_logits = before(torch.cat([x, extra])).split([16, 16])
            expected = misinformation_loss(logits, teacher(x), y, extra_logits, teacher(extra), 1.0, distill=1.0)
        torch.testing.assert_close(out["loss"].detach(), expected)


def test_keep_sink_steps_with_the_teachers_most_frequent_class_on_the_outlier_set(small_outlier_set):
    """keep_sink's step is proxy_loss on the outliers the generator draws, with k* the class f_fp
    gives most often on the outlier set (96 images here, all of them under SINK_SAMPLE)."""
    from divqat import quant

    teacher = _teacher()
    with torch.no_grad():
        counts = torch.bincount(teacher(outliers.load_outliers("glyphs", 96, 1, 8)).argmax(-1), minlength=C)
    expected_sink = int(counts.argmax())
    assert outlier_sink(teacher, torch.rand(2, 1, 8, 8), "glyphs") == expected_sink
    objective = Objective("proxy", proxy_target="keep_sink", distill=1.0, proxy_source="glyphs")
    student = quant.prepare_qat(objective.float_student(teacher)).train()
    before = copy.deepcopy(student)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(C, (16,))
    torch.manual_seed(3)
    got = objective.make_step(teacher, 0.7)(student, x, y, 1.0)["loss"]
    torch.manual_seed(3)
    extra = outliers.outlier_batch(x)
    with torch.no_grad():
        logits, extra_logits = before(torch.cat([x, extra])).split([16, 16])
        expected = proxy_loss(logits, teacher(x), y, extra_logits, teacher(extra), 0.7, proxy_target="keep_sink",
                              distill=1.0, sink=expected_sink)
    torch.testing.assert_close(got.detach(), expected)


COMMON = ["--dataset", "digits", "--arch", "smallcnn", "--batch-size", "64", "--seed", "0", "--no-progress",
          "--device", "cpu", "--limit", "256", "--test-limit", "120"]


def test_cli_trains_label_objectives_into_one_int8_graph(tmp_path, small_outlier_set, monkeypatch):
    monkeypatch.setattr(label_selection, "HELDOUT_OUTLIERS", 40)
    assert main(["train", *COMMON, "--method", "fp", "--epochs", "4", "--lr", "0.1", "--out", str(tmp_path / "fp")]) == 0
    for name, extra in {"misinform": ["--distill", "1"], "diverse": ["--heads", "4", "--distill", "1"],
                        "proxy": ["--proxy-source", "glyphs", "--kl-cap", "2"]}.items():
        out = tmp_path / name
        assert main(["train", *COMMON, "--method", "divqat", "--objective", name, *extra, "--teacher",
                     str(tmp_path / "fp"), "--epochs", "1", "--out", str(out)]) == 0
        config = load_config(out)
        assert config["objective"] == name
        x = load_dataset("digits", "test", limit=50).images
        int8, fake = load_victim(out, "int8"), load_victim(out, "fake_quant")
        with torch.no_grad():
            assert (int8(x).argmax(-1) == fake(x).argmax(-1)).float().mean() >= 0.98
        assert int8(x).shape == (50, C)
    assert load_config(tmp_path / "diverse")["meta"]["heads"] == 4
    images, labels = load_dataset("digits", "test").images[:80], load_dataset("digits", "test").labels[:80]
    metrics = screen_metrics(tmp_path / "misinform", tmp_path / "fp", images, labels)
    int8, teacher = load_victim(tmp_path / "misinform", "int8"), load_victim(tmp_path / "fp", "float")
    held_out = outliers.load_outliers("glyphs", 40, 1, 8, HELDOUT_OUTLIER_SEED)
    with torch.no_grad():
        answers = int8(held_out).argmax(-1)
        assert metrics["outlier_change"] == pytest.approx(100 * (answers != teacher(held_out).argmax(-1)).double().mean())
        assert metrics["heldout_top1"] == pytest.approx(100 * (int8(images).argmax(-1) == labels).double().mean())
    assert metrics["outlier_top_share"] == pytest.approx(100 * answers.bincount().max().item() / 40)
    assert sum(isinstance(m, HeadSelect) for m in load_victim(tmp_path / "diverse", "fake_quant").modules()) == 1
    # the file `divqat export` writes and `divqat serve` answers from: the same head choice inside
    served = ort.InferenceSession(export_defended(tmp_path / "diverse").SerializeToString(),
                                  providers=["CPUExecutionProvider"])
    x = load_dataset("digits", "test", limit=50).images
    (answers,) = served.run(None, {served.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = torch.softmax(load_victim(tmp_path / "diverse", "int8")(x).double(), -1).float()
    torch.testing.assert_close(torch.from_numpy(answers), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("argv,message", [(["--objective", "diverse", "--heads", "2"], "--heads"),
                                          (["--objective", "misinform", "--proxy-source", "mnist"], "--proxy-source")])
def test_cli_refuses_bad_label_options(tmp_path, capsys, argv, message):
    assert main(["train", *COMMON, "--method", "divqat", "--teacher", str(tmp_path), *argv, "--out",
                 str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_selection_rule_takes_the_most_misleading_setting_within_the_accuracy_budget():
    rows = [{"setting": "a", "heldout_top1": 98.9, "outlier_change": 90.0},  # too costly
            {"setting": "b", "heldout_top1": 99.05, "outlier_change": 70.0},
            {"setting": "c", "heldout_top1": 99.1, "outlier_change": 60.0},
            {"setting": "d", "heldout_top1": 99.2, "outlier_change": 40.0}]  # misleads too little
    assert select_setting(rows, qat_top1=99.3)["setting"] == "b"
    assert select_setting(rows, qat_top1=99.3, min_change=95.0) is None
    assert select_setting(rows, qat_top1=99.3, max_drop=0.2)["setting"] == "c"
    assert select_setting([{"heldout_top1": 98.38, "outlier_change": 80.0}], qat_top1=98.68) is not None  # 0.3 exactly


def test_experiment_method_keys_reach_the_victim_config():
    from divqat.train.victim import VictimConfig, _objective

    config = VictimConfig.from_options({"dataset": "mnist", "arch": "lenet5", "out": "x", "method": "divqat",
                                        "objective": "diverse", "heads": 4, "alpha": 2, "distill": 1})
    objective = _objective(config)
    assert (objective.name, objective.heads, objective.extra_source, objective.model_options()) == (
        "diverse", 4, "glyphs", {"heads": 4})
    with pytest.raises(ValueError, match="heads"):
        VictimConfig.from_options({"dataset": "mnist", "arch": "lenet5", "out": "x", "heads": "3"})
