"""`divqat train` options: one table of defaults, options the run would ignore refused before
any work, and runs that cannot be right refused or stopped (empty --out, a diverged loss,
non-finite logits, a resume of another run, a misinformation model as victim or teacher)."""
import argparse
import dataclasses
import inspect
import sys
import textwrap

import pytest
import torch

from divqat.cli import main
from divqat.train import VictimConfig, train_divqat
from divqat.train.command import add_arguments
from divqat.train.objectives import Objective
from divqat.train.victim import check_config

pytestmark = pytest.mark.usefixtures("one_thread")

COMMON = ["--dataset", "digits", "--arch", "smallcnn", "--limit", "200", "--test-limit", "50", "--batch-size", "50",
          "--seed", "0", "--no-progress", "--device", "cpu"]


def _config(**options):
    return VictimConfig(dataset="digits", arch="smallcnn", out="unused", **options)


# (method, other options, the option refused); written out by hand, not read from the table
IGNORED = [
    ("qat", {"alpha": 5.0}, "--alpha"),
    ("qat", {"temperature": 2.0}, "--temperature"),
    ("qat", {"objective": "proxy"}, "--objective"),
    ("fp", {"lsq": True}, "--lsq"),
    ("fp", {"bits": 4}, "--bits"),
    ("fp", {"freeze_last": 0}, "--freeze-last"),
    ("ptq", {"optimizer": "adam"}, "--optimizer"),
    ("ptq", {"epochs": 3}, "--epochs"),
    ("ptq", {"lr": 0.1}, "--lr"),
    ("ptq", {"no_augment": True}, "--no-augment"),
    ("ptq", {"freeze_last": 2}, "--freeze-last"),
    ("divqat", {"margin": 2.0}, "--margin"),  # the paper's objective has no margin
    ("divqat", {"objective": "proxy", "margin_weight": 0.5}, "--margin-weight"),
    ("divqat", {"objective": "nonlabel", "distill": 1.0}, "--distill"),
    ("divqat", {"objective": "nonlabel", "proxy_target": "entropy"}, "--proxy-target"),
    ("adv-fgsm", {"eps": 0.1, "alpha": 0.5}, "--alpha"),
    ("fp", {"eps": 0.1}, "--eps"),
    ("fp", {"teacher": "runs/fp"}, "--teacher"),
]


@pytest.mark.parametrize("method,options,refused", IGNORED)
def test_an_option_the_method_or_objective_ignores_is_refused(method, options, refused):
    teacher = {"teacher": "runs/fp"} if method in ("ptq", "qat", "divqat") else {}
    with pytest.raises(ValueError, match=f"^{refused} applies to --(method|objective) .* only, not "):
        check_config(_config(method=method, **{**teacher, **options}))


@pytest.mark.parametrize("method,options", [
    ("divqat", {"alpha": 0.5, "temperature": 2.0, "direction": "reverse", "kl_cap": 1.0, "alpha_warmup": 1.0}),
    ("divqat", {"objective": "nonlabel", "margin": 2.0, "margin_weight": 0.5}),
    ("divqat", {"objective": "proxy", "proxy_target": "shift", "distill": 1.0, "proxy_transforms": "mixup"}),
    ("qat", {"bits": 4, "lsq": True, "freeze_last": 0, "optimizer": "adam", "epochs": 2}),
    ("ptq", {"bits": 6, "batch_size": 64, "limit": 10}),
    ("adv-pgd", {"eps": 0.1, "lr": 0.01, "no_augment": True}),
    ("qat", {"alpha": 1.0}),  # the default, as an experiment's shared table may repeat it
])
def test_the_options_a_run_reads_are_accepted(method, options):
    teacher = {"teacher": "runs/fp"} if method in ("ptq", "qat", "divqat") else {}
    check_config(_config(method=method, **teacher, **options))


def test_defaults_come_from_the_config_alone():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--dataset", "d", "--arch", "a", "--out", "o"])
    config = VictimConfig("d", "a", "o")
    assert {k: v for k, v in vars(args).items() if k not in ("overwrite", "tensorboard")} == dataclasses.asdict(config)
    assert Objective() == Objective(config.objective, config.margin, config.margin_weight, config.proxy_target,
                                    config.distill, tuple(config.proxy_transforms.split(",")))
    signature = inspect.signature(train_divqat).parameters
    for name, field in (("temperature", "temperature"), ("direction", "direction"), ("kl_cap", "kl_cap"),
                        ("alpha_warmup_epochs", "alpha_warmup"), ("freeze_last_epochs", "freeze_last"),
                        ("batch_size", "batch_size")):
        assert signature[name].default == getattr(config, field), name


def _refused(capsys, argv, word, out):
    assert main(["train", *COMMON, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("divqat train: error:") and word in err[0], err
    assert out is None or not out.exists()


def test_cli_refuses_an_ignored_option_before_any_work(tmp_path, capsys):
    out = tmp_path / "fp"
    _refused(capsys, ["--method", "fp", "--lsq", "--out", str(out)], "--lsq applies to --method ptq, qat, divqat", out)


def test_an_empty_out_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _refused(capsys, ["--method", "fp", "--epochs", "1", "--out", ""], "--out", None)
    assert list(tmp_path.iterdir()) == []


def test_a_diverged_run_stops_with_an_error(tmp_path, capsys):
    out = tmp_path / "fp"
    _refused(capsys, ["--method", "fp", "--epochs", "2", "--lr", "1e8", "--out", str(out)], "diverged", None)
    assert not (out / "metrics.json").exists() and not (out / "checkpoint.pt").exists()


def test_an_architecture_with_non_finite_logits_is_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "nan_nets.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        class NanNet(nn.Module):
            def __init__(self, num_classes):
                super().__init__()
                self.fc = nn.LazyLinear(num_classes)

            def forward(self, x):
                return self.fc(x.flatten(1)) * float("nan")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "nan_nets", raising=False)
    out = tmp_path / "run"
    argv = [a if a != "smallcnn" else "nan_nets:NanNet" for a in COMMON]
    assert main(["train", *argv, "--method", "fp", "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--arch nan_nets:NanNet" in err[0] and "not finite" in err[0]
    assert not out.exists()


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    for seed in ("0", "1"):
        argv = [a if a != "0" else seed for a in COMMON]
        assert main(["train", *argv, "--method", "fp", "--epochs", "1", "--out", str(root / f"fp{seed}")]) == 0
    return root


def _interrupted_qat(teachers, out):
    """A qat run of teacher fp0 whose finished marker is gone: as killed after its last checkpoint."""
    assert main(["train", *COMMON, "--method", "qat", "--teacher", str(teachers / "fp0"), "--epochs", "1",
                 "--out", str(out)]) == 0
    (out / "metrics.json").unlink()
    return torch.load(out / "model.pt", weights_only=True)


@pytest.mark.parametrize("change,word", [
    (["--teacher", "{fp1}"], "--teacher"),
    (["--teacher", "{fp0}", "--limit", "150"], "--limit"),
    (["--teacher", "{fp0}", "--bits", "6"], "--bits"),
])
def test_resume_of_another_run_is_refused(teachers, tmp_path, capsys, change, word):
    out = tmp_path / "qat"
    _interrupted_qat(teachers, out)
    before = (out / "config.json").read_bytes()
    argv = [a.format(fp0=teachers / "fp0", fp1=teachers / "fp1") for a in change]
    _refused(capsys, ["--method", "qat", "--epochs", "1", "--resume", *argv, "--out", str(out)],
             f"--resume: {word}", None)
    assert (out / "config.json").read_bytes() == before


def test_resume_of_the_same_run_continues(teachers, tmp_path):
    out = tmp_path / "qat"
    trained = _interrupted_qat(teachers, out)
    assert main(["train", *COMMON, "--method", "qat", "--epochs", "1", "--resume", "--teacher",
                 str(teachers / "fp0") + "/", "--out", str(out)]) == 0  # the same teacher, spelled otherwise
    resumed = torch.load(out / "model.pt", weights_only=True)
    assert resumed.keys() == trained.keys() and all(torch.equal(resumed[k], trained[k]) for k in trained)


@pytest.fixture(scope="module")
def misinformation(tmp_path_factory):
    out = tmp_path_factory.mktemp("mis") / "am"
    assert main(["train-misinformation", "--dataset", "digits", "--arch", "smallcnn", "--epochs", "1", "--limit", "100",
                 "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    return out


def test_a_misinformation_model_is_no_teacher(misinformation, tmp_path, capsys):
    out = tmp_path / "qat"
    _refused(capsys, ["--method", "qat", "--epochs", "1", "--teacher", str(misinformation), "--out", str(out)],
             "--teacher", out)


def test_a_misinformation_model_is_no_victim(misinformation, capsys):
    assert main(["evaluate", "--victim", str(misinformation), "--test-limit", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "misinformation" in err[0] and "not a victim" in err[0]


def test_a_misinformation_model_still_serves_adaptive_misinformation(misinformation):
    from divqat.defenses import build_defense
    from divqat.train import load_victim

    defense = build_defense("am", model=str(misinformation), tau=0.5)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = load_victim(misinformation, kind="float", victim_only=False)(x)
    assert torch.equal(defense.misinformation_model(x), expected)


EXPERIMENT = {"data": {"victim": "digits", "queryset": "digits"}, "victim": {"arch": "smallcnn", "epochs": 1},
              "methods": [{"name": "qat"}]}


@pytest.mark.parametrize("patch,match", [
    ({"methods": [{"name": "qat", "alpha": 5.0}]}, "^methods qat.*: --alpha applies to --method divqat only"),
    ({"methods": [{"name": "divqat", "alpha": 1.0, "margin": 2.0}]}, "--margin applies to --objective nonlabel only"),
    ({"methods": [{"name": "ptq", "optimizer": "adam"}]}, "--optimizer applies to --method fp, qat, divqat"),
    ({"defenses": [{"name": "none", "beta": 0.5}]}, "^defenses none: .* beta$"),
    ({"quant": {"alpha": 2.0}}, "^quant.alpha: no victim of this experiment reads it"),
    ({"victim": {"arch": "smallcnn", "margin": 2.0}}, "^victim.margin: no victim of this experiment reads it"),
])
def test_an_experiment_refuses_what_its_runs_would_ignore(patch, match):
    from divqat.experiments.config import parse_config

    with pytest.raises(ValueError, match=match):
        parse_config({**EXPERIMENT, **patch})


def test_a_shared_table_gives_each_victim_the_options_it_reads():
    from divqat.experiments.config import Entry, parse_config, victim_config

    config = parse_config({**EXPERIMENT, "quant": {"epochs": 2, "bits": 6, "alpha": 0.5},
                           "methods": [{"name": "ptq"}, {"name": "qat"}, {"name": "divqat", "alpha": 0.25}]})
    ptq, qat, div = (victim_config(config, m, 0, "out", "teacher") for m in config.methods)
    fp = victim_config(config, Entry("fp"), 0, "out")
    assert (fp.epochs, fp.bits, fp.alpha) == (1, 8, 1.0)
    assert (ptq.epochs, ptq.bits, ptq.alpha) == (None, 6, 1.0)
    assert (qat.epochs, qat.bits, qat.alpha) == (2, 6, 1.0)
    assert (div.epochs, div.bits, div.alpha) == (2, 6, 0.25)
