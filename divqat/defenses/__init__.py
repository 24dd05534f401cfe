"""Output-perturbation defenses against model extraction (docs/science.md §4).

Each defense maps a batch of the victim's probability vectors (N, C) to a batch of returned
probability vectors (N, C), row by row: ``defense(probs)``, or ``defense(probs, x)`` for the
two that run a model of their own on the query inputs (adaptive misinformation and MAD,
``needs_input = True``). Build them by name with :func:`build_defense`; measure what they cost
honest users with :func:`defense_cost`.

Which keep the victim's top-1 answer (argmax) on every row: TopK, LabelOnly, MAD with
``keep_argmax=True``, and Rounding weakly (the top class stays a top class; rounding can
create a tie). DCP, ReverseSigmoid, AdaptiveMisinformation, RandomNoise and MAD by default can
change it (DCP only on rows less confident than about beta).
"""
from .base import Defense
from .command import add_defense_arguments, defense_from_args, parse_defense_args
from .cost import defense_cost
from .dcp import DCP
from .label_only import LabelOnly
from .mad import MAD
from .misinformation import AdaptiveMisinformation, misinformation_loss, train_misinformation_model
from .params import Param
from .random_noise import RandomNoise
from .registry import ALIASES, DEFENSES, build_defense, load_model, random_model_like
from .reverse_sigmoid import ReverseSigmoid
from .rounding import Rounding
from .topk import TopK

__all__ = ["Defense", "DCP", "ReverseSigmoid", "AdaptiveMisinformation", "MAD", "RandomNoise", "Rounding", "TopK",
           "LabelOnly", "DEFENSES", "ALIASES", "build_defense", "parse_defense_args", "add_defense_arguments",
           "defense_from_args", "load_model", "random_model_like", "Param", "defense_cost", "misinformation_loss", "train_misinformation_model"]
