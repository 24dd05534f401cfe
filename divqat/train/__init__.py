"""Training victims: full precision, PTQ, QAT and DivQAT (arXiv 2512.23948), with one shared
loop (SGD/Adam, cosine schedule, checkpoints with bit-exact resume, torchrun DDP), the output
directory format, :func:`train_victim` (a whole run from a :class:`VictimConfig`, as
``divqat train`` does it) and ``load_victim`` to get a trained model back."""
from divqat.train.artifacts import load_config, load_victim
from divqat.train.loop import fit
from divqat.train.trainers import TrainResult, divqat_step, ptq, train_divqat, train_fp, train_qat
from divqat.train.victim import VictimConfig, train_victim

__all__ = ["fit", "train_fp", "ptq", "train_qat", "train_divqat", "divqat_step", "TrainResult",
           "VictimConfig", "train_victim", "load_victim", "load_config"]
