"""Model-extraction attacks through a query-counted :class:`~divqat.blackbox.BlackBox`.

Each attack takes the black box, a budget, a surrogate architecture (default: the victim's),
its hyperparameters (docs/science.md §5 defaults) and a seed, spends at most ``budget``
queries (exactly ``budget`` whenever the attack can use them all), and returns
``(surrogate, record)``, the record logging its parameters and ``queries_used``.

- :func:`knockoff`, :func:`knockoff_adaptive` (Orekondy et al. 2019), :func:`copycat`
  (Correia-Silva et al. 2018), :func:`jbda` (Papernot et al. 2017) take a query set;
- :func:`dfme` (Truong et al. 2021) and :func:`maze` (Kariyappa et al. 2021) are data-free;
- thieves that know the defense (docs/science.md §10): :func:`sink_aware` (rebalances the
  answered classes), :func:`smoothing` (k augmented copies per image, answers aggregated) and
  :func:`mixed` (a share of in-distribution queries from a held-out part of the victim's test
  split); every query-set attack takes a surrogate ``arch`` other than the victim's.

By name: :data:`SPECS` (what each attack can do) and :func:`run_attack` / :func:`attack_call`
(:mod:`divqat.attacks.registry`), shared by ``divqat attack`` and the experiment pipeline.
"""
from divqat.attacks.copycat import copycat
from divqat.attacks.dfme import dfme
from divqat.attacks.jbda import jbda
from divqat.attacks.knockoff import knockoff
from divqat.attacks.knockoff_adaptive import knockoff_adaptive
from divqat.attacks.maze import maze
from divqat.attacks.mixed import mixed
from divqat.attacks.registry import ATTACKS, CACHED, DATA_FREE, SPECS, AttackSpec, attack_call, attack_spec, run_attack
from divqat.attacks.sink_aware import sink_aware
from divqat.attacks.smoothing import smoothing
from divqat.attacks.surrogate import TrainConfig, build_surrogate, soft_label_loss, train_surrogate

__all__ = ["ATTACKS", "DATA_FREE", "CACHED", "SPECS", "AttackSpec", "attack_spec", "attack_call", "run_attack",
           "knockoff", "knockoff_adaptive", "copycat", "jbda", "dfme", "maze", "sink_aware",
           "smoothing", "mixed", "TrainConfig", "build_surrogate",
           "soft_label_loss", "train_surrogate"]
