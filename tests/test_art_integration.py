"""ART interop (divqat.integrations.art): a BlackBox as ART classifier (answers and query count
equal the black box's own), a divqat model as PyTorchClassifier, divqat defenses as ART
postprocessors, and ART's own KnockoffNets and CopycatCNN run end to end against a divqat
victim on sklearn's 8x8 digits."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("art")  # the optional extra divqat[art]; scripts/install.sh installs it

from art.attacks.extraction import CopycatCNN, KnockoffNets  # noqa: E402

from divqat.blackbox import BlackBox, QueryBudgetExceeded  # noqa: E402
from divqat.cli import main  # noqa: E402
from divqat.data import load_tensors  # noqa: E402
from divqat.defenses import build_defense  # noqa: E402
from divqat.integrations.art import DefensePostprocessor, art_classifier, art_surrogate  # noqa: E402
from divqat.metrics import evaluate_surrogate  # noqa: E402
from divqat.train import load_victim  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def victim_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("art") / "victim"
    assert main(["train", "--dataset", "digits", "--arch", "smallcnn", "--epochs", "8", "--batch-size", "32",
                 "--no-progress", "--device", "cpu", "--out", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def digits():
    return load_tensors("digits", "train"), load_tensors("digits", "test")


def test_blackbox_classifier_answers_and_counts_as_the_blackbox(victim_dir, digits):
    blackbox = BlackBox.from_dir(victim_dir, output="topk", k=3, budget=50)
    classifier = art_classifier(blackbox)
    x = digits[1][0][:20]
    answers = classifier.predict(x.numpy(), batch_size=8)
    assert blackbox.queries_used == 20
    np.testing.assert_array_equal(answers, blackbox.uncounted_query(x).numpy())
    assert classifier.nb_classes == 10 and classifier.input_shape == (1, 8, 8)
    with pytest.raises(QueryBudgetExceeded):
        classifier.predict(digits[1][0][:40].numpy(), batch_size=40)
    assert blackbox.queries_used == 20


def test_model_classifier_predicts_probabilities_and_applies_a_defense(victim_dir, digits):
    model = load_victim(victim_dir)
    x = digits[1][0][:16]
    with torch.no_grad():
        probs = F.softmax(model(x), dim=1)
    np.testing.assert_allclose(art_classifier(model).predict(x.numpy()), probs.numpy(), rtol=1e-5, atol=1e-7)
    defense = build_defense("reverse_sigmoid", beta=0.7, gamma=0.4)
    defended = art_classifier(model, postprocessing_defences=[DefensePostprocessor(defense)]).predict(x.numpy())
    np.testing.assert_allclose(defended, defense(probs).numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name, kwargs", [("topk", {"k": 2}), ("rounding", {"decimals": 1}), ("dcp", {"beta": 0.5})])
def test_postprocessor_is_the_defense(name, kwargs):
    defense = build_defense(name, **kwargs)
    probs = torch.softmax(torch.randn(12, 10) * 3, dim=1)
    out = DefensePostprocessor(defense)(probs.numpy())
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, defense(probs).numpy())


def test_input_dependent_defense_is_refused_as_postprocessor(victim_dir):
    mad = build_defense("mad", surrogate=load_victim(victim_dir), epsilon=0.5)
    with pytest.raises(ValueError, match="BlackBox"):
        DefensePostprocessor(mad)


@pytest.mark.parametrize("attack", ["knockoff", "copycat"])
def test_art_extraction_attacks_steal_a_divqat_victim(victim_dir, digits, attack):
    (xq, _), test = digits
    budget = 400
    blackbox = BlackBox.from_dir(victim_dir, budget=budget)
    common = dict(batch_size_fit=32, batch_size_query=64, nb_epochs=15, nb_stolen=budget)
    if attack == "knockoff":
        art_attack = KnockoffNets(art_classifier(blackbox), sampling_strategy="random", use_probability=True, **common)
    else:
        art_attack = CopycatCNN(art_classifier(blackbox), **common)
    np.random.seed(0)
    thief = art_surrogate("smallcnn", blackbox.meta, train={"momentum": 0.9, "lr": 0.05})
    stolen = art_attack.extract(xq.numpy(), thieved_classifier=thief)
    assert blackbox.queries_used == budget  # every ART query went through the black box
    scores = evaluate_surrogate(stolen.model, blackbox, test)
    assert scores["victim_accuracy"] > 0.8
    assert scores["agreement"] > 0.8  # chance is 0.1; 0.94 on three seeds when written
