"""Model-extraction attacks through a query-counted :class:`~divqat.blackbox.BlackBox`.

Each attack takes the black box, a budget, a surrogate architecture (default: the victim's),
its hyperparameters (SCIENCE.md section 5 defaults) and a seed, spends at most ``budget``
queries (exactly ``budget`` whenever the attack can use them all), and returns
``(surrogate, record)``, the record logging its parameters and ``queries_used``.

- :func:`knockoff`, :func:`knockoff_adaptive` (Orekondy et al. 2019), :func:`copycat`
  (Correia-Silva et al. 2018), :func:`jbda` (Papernot et al. 2017) take a query set;
- :func:`dfme` (Truong et al. 2021) and :func:`maze` (Kariyappa et al. 2021) are data-free.
"""
from divqat.attacks.copycat import copycat
from divqat.attacks.dfme import dfme
from divqat.attacks.jbda import jbda
from divqat.attacks.knockoff import knockoff
from divqat.attacks.knockoff_adaptive import knockoff_adaptive
from divqat.attacks.maze import maze
from divqat.attacks.surrogate import TrainConfig, build_surrogate, soft_label_loss, train_surrogate

#: CLI name -> attack function.
ATTACKS = {
    "knockoff": knockoff,
    "knockoff-adaptive": knockoff_adaptive,
    "copycat": copycat,
    "jbda": jbda,
    "dfme": dfme,
    "maze": maze,
}
#: Attacks that need no query set.
DATA_FREE = ("dfme", "maze")

__all__ = ["ATTACKS", "DATA_FREE", "knockoff", "knockoff_adaptive", "copycat", "jbda", "dfme", "maze",
           "TrainConfig", "build_surrogate", "soft_label_loss", "train_surrogate"]
