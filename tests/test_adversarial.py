"""Adversarial training (docs/science.md §7): on sklearn's digits, FGSM adversarial training raises
accuracy under FGSM and PGD well above natural training's, with the same loop and seed."""
import pytest
import torch

from divqat.data import load_dataset
from divqat.models import build_model_for
from divqat.robustness import robust_accuracy
from divqat.train.adversarial import adversarial_step, train_adversarial
from divqat.train.trainers import train_fp

OPTS = dict(epochs=2, batch_size=32, lr=0.05, seed=0, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def test_fgsm_training_raises_accuracy_under_attack(digits):
    train, test = digits
    natural = train_fp(build_model_for("smallcnn", "digits"), train, test, **OPTS).model
    robust = train_adversarial(build_model_for("smallcnn", "digits"), train, test, "fgsm", 0.1, **OPTS)
    assert {"loss", "ce", "ce_adv", "test_accuracy"} <= set(robust.history[-1])
    nat = robust_accuracy(natural, test, "fgsm", (0.0, 0.1), progress=False)
    adv = robust_accuracy(robust.model, test, "fgsm", (0.0, 0.1), progress=False)
    assert adv[0.0] > 0.9 and nat[0.0] > 0.9  # both learn the task
    assert adv[0.1] > nat[0.1] + 0.1
    nat_pgd = robust_accuracy(natural, test, "pgd", (0.1,), step_size=None, progress=False)
    adv_pgd = robust_accuracy(robust.model, test, "pgd", (0.1,), step_size=None, progress=False)
    assert adv_pgd[0.1] > nat_pgd[0.1] + 0.1


def test_adversarial_step_loss_is_the_weighted_mix(digits):
    torch.manual_seed(0)
    model = build_model_for("smallcnn", "digits").eval()
    x, y = torch.stack([digits[0][i][0] for i in range(16)]), torch.tensor([digits[0][i][1] for i in range(16)])
    out = adversarial_step("pgd", 0.1, adv_weight=0.25, steps=2, random_start=False)(model, x, y, 0.0)
    torch.testing.assert_close(out["loss"], 0.75 * out["ce"] + 0.25 * out["ce_adv"])
    assert out["ce_adv"] > out["ce"]  # the crafted examples are harder
    assert out["loss"].requires_grad


@pytest.mark.parametrize("kwargs, match", [({"attack": "cw"}, "attack"), ({"eps": 0.0}, "eps"),
                                           ({"adv_weight": 1.5}, "adv_weight")])
def test_bad_options(digits, kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_adversarial(build_model_for("smallcnn", "digits"), *digits, **{"attack": "fgsm", "eps": 0.1, **kwargs},
                          epochs=1, progress=False)
