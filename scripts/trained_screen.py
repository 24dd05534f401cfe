"""Screen trained-in defense settings cheaply, before spending surrogate training on them.

    OMP_NUM_THREADS=1 python scripts/trained_screen.py mnist fashion-mnist FP_DIR QAT_DIR OUT_DIR \
        "--objective proxy --alpha 0.3 --kl-cap 2 --distill 1" ...

Trains each setting (extra `divqat train --method divqat` options, one quoted string each) from
the fp teacher FP_DIR (10000 training images, one epoch, seed 0, like the frontier configs) into
OUT_DIR, and prints one line per setting: top-1 on the victim's first 2000 test images, and on
the first 3000 training images of the attacker's query set (evaluation only, never trained on)
the share of argmax labels equal to those of the QAT victim QAT_DIR and of f_fp, the mean
entropy and the mean top probability of the answers, and how many queries each class gets. A label-only attacker learns from those
labels, so a setting that leaves them as QAT's cannot stop Copycat.
"""
import sys
from pathlib import Path

import torch

from divqat.cli import main
from divqat.data import load_dataset
from divqat.train import load_victim


@torch.no_grad()
def _logits(model, x):
    return torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])


def screen(victim, queryset, teacher, qat, out, settings):
    test = load_dataset(victim, "test", limit=2000)
    queries = load_dataset(queryset, "train", limit=3000).images
    qat_labels = _logits(load_victim(qat, "fake_quant").eval(), queries).argmax(1)
    fp_labels = _logits(load_victim(teacher, "float").eval(), queries).argmax(1)
    print(f"{'f_fp':60s} per_class={torch.bincount(fp_labels, minlength=int(fp_labels.max()) + 1).tolist()}")
    for setting in settings:
        argv = setting.split()
        run = Path(out) / "_".join(a.strip("-") for a in argv)
        if not (run / "metrics.json").exists():
            code = main(["train", "--dataset", victim, "--arch", "lenet5", "--method", "divqat", "--teacher", teacher,
                         "--limit", "10000", "--test-limit", "2000", "--epochs", "1", "--seed", "0", "--no-progress",
                         "--device", "cpu", *argv, "--out", str(run)])
            if code:
                return code
        model = load_victim(run, "fake_quant").eval()
        answers = _logits(model, queries).softmax(1)
        accuracy = (_logits(model, test.images).argmax(1) == test.labels).float().mean().item()
        entropy = -(answers * answers.clamp_min(1e-12).log()).sum(1).mean().item()
        print(f"{setting:60s} acc={accuracy:.4f} labels_as_qat={(answers.argmax(1) == qat_labels).float().mean():.3f} "
              f"labels_as_fp={(answers.argmax(1) == fp_labels).float().mean():.3f} entropy={entropy:.3f} "
              f"top_p={answers.max(1).values.mean():.3f} "
              f"per_class={torch.bincount(answers.argmax(1), minlength=answers.shape[1]).tolist()}", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 7:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(screen(*sys.argv[1:6], sys.argv[6:]))
