"""The options of ``divqat attack --victim http://HOST:PORT``: the key to spend and where the
surrogate's scores come from (:mod:`divqat.serving.remote` opens the victims they name).
"""
from divqat.serving.remote import API_KEY_ENV, EVAL_API_KEY_ENV

__all__ = ["add_arguments"]


def add_arguments(parser):
    """The options of an attack on a served victim (ignored for a directory victim)."""
    parser.add_argument("--api-key", metavar="TOKEN",
                        help=f"with a URL victim: the key to spend (default ${API_KEY_ENV})")
    parser.add_argument("--eval-victim", metavar="DIR", help="with a URL victim: score the surrogate against a local "
                        "copy, the run directory the served file was exported from")
    parser.add_argument("--eval-api-key", metavar="TOKEN", help="with a URL victim: score the surrogate through the "
                        f"server with this second key (default ${EVAL_API_KEY_ENV}); needs --eval-dataset")
    parser.add_argument("--eval-dataset", metavar="NAME", help="the test set scored through --eval-api-key")
