"""Per-epoch and final evaluation of a trained victim on its test set.

For a quantized student f_q of a full-precision model f_fp (DivQAT, arXiv 2512.23948, docs/science.md
§3) the monitors are

    kl_fp_q = mean_i KL( softmax(f_fp(x_i)) || softmax(f_q(x_i)) )     (div_kl_loss, T = 1, per sample)
    l1_fp_q = mean_i || softmax(f_fp(x_i)) - softmax(f_q(x_i)) ||_1

which DivQAT drives up while ``test_accuracy`` (top-1 of f_q) should stay put.
"""
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from divqat.metrics import accuracy, agreement, mean_l1
from divqat.ops import div_kl_loss


@torch.no_grad()
def predict(model, dataset, batch_size=512, device="cpu"):
    """(logits, labels) of ``model`` (put in eval mode) over ``dataset``, on the CPU in float32."""
    model.eval()
    logits, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        logits.append(model(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def divergence(fp_logits, q_logits):
    """{"kl_fp_q", "l1_fp_q"}: mean KL(f_fp || f_q) and mean L1 between their probability vectors."""
    kl = div_kl_loss(q_logits, fp_logits, temperature=1.0, reduction="none", direction="forward")
    return {"kl_fp_q": kl.double().mean().item(),
            "l1_fp_q": mean_l1(F.softmax(fp_logits, dim=1), F.softmax(q_logits, dim=1))}


class Evaluator:
    """``evaluator(model) -> {"test_accuracy", ["kl_fp_q", "l1_fp_q"]}`` on ``test_set``.

    With a ``reference`` (the frozen full-precision teacher), its logits are computed once and
    the divergence monitors are added.
    """

    def __init__(self, test_set, reference=None, batch_size=512, device="cpu"):
        self.test_set, self.batch_size, self.device = test_set, batch_size, device
        self.reference_logits = None
        if reference is not None:
            self.reference_logits, _ = predict(reference, test_set, batch_size, device)

    def __call__(self, model):
        logits, labels = predict(model, self.test_set, self.batch_size, self.device)
        result = {"test_accuracy": accuracy(logits, labels)}
        if self.reference_logits is not None:
            result.update(divergence(self.reference_logits, logits))
        return result


def quantized_metrics(student, teacher, int8_model, test_set, batch_size=512, device="cpu"):
    """Final metrics of a quantized victim on ``test_set``.

    test_accuracy (fake-quantized student), teacher_test_accuracy, kl_fp_q / l1_fp_q (student
    against the full-precision teacher), int8_test_accuracy, int8_agreement (share of inputs
    where argmax int8 == argmax fake-quant) and kl_fp_int8 / l1_fp_int8 (int8 model against
    the teacher).
    """
    q_logits, labels = predict(student, test_set, batch_size, device)
    fp_logits, _ = predict(teacher, test_set, batch_size, device)
    int8_logits, _ = predict(int8_model, test_set, batch_size, "cpu")
    int8_div = divergence(fp_logits, int8_logits)
    return {"test_accuracy": accuracy(q_logits, labels), "teacher_test_accuracy": accuracy(fp_logits, labels),
            **divergence(fp_logits, q_logits),
            "int8_test_accuracy": accuracy(int8_logits, labels), "int8_agreement": agreement(int8_logits, q_logits),
            "kl_fp_int8": int8_div["kl_fp_q"], "l1_fp_int8": int8_div["l1_fp_q"]}
