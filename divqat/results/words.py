"""Plot titles and labels in plain words: datasets, victims, thieves and defense settings, as a
reader names them instead of the internal keys (``mnist<-fashion-mnist``, ``knockoff-20ep``)."""
import re

from .frontier import SURROGATE_EPOCHS

DATASETS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
            "svhn": "SVHN"}
ATTACKS = {"knockoff": "KnockoffNets thief (sees probabilities)", "copycat": "Copycat thief (sees labels only)",
           "sink-aware": "sink-aware thief (rebalances the answered classes)",
           "smoothing": "smoothing thief (answers over shifted, noisy copies)",
           "mixed": "mixed thief (some in-distribution images)"}
# a frontier attack name: base, options in parentheses, then -adaptive, -sharpen<tau>, -<E>ep parts
ATTACK_NAME = re.compile(r"(?P<base>[^(]+?)(?:\((?P<options>[^)]*)\))?(?P<parts>(?:-(?:adaptive|sharpen[\d.]+|\d+ep))*)$")
GREEK = (("alpha", "α"), ("beta", "β"), ("gamma", "γ"), ("tau", "τ"), ("epsilon", "ε"), ("nu", "ν"))
OFFSETS = ((5, 4), (5, -10), (-12, 4), (-12, -10))  # label offsets (points) taken in turn


def victim_words(victim_setting):
    """``trained on all its training images`` / ``trained on 10,000 training images``."""
    if victim_setting == "full":
        return "trained on all its training images"
    return f"trained on {int(victim_setting.removeprefix('train')):,} training images"


def victim_words_of(pair, victim_setting):
    """``MNIST victim (trained on 10,000 training images)`` of a frontier pair and victim setting."""
    return f"{DATASETS.get(pair.split('<-')[0], pair)} victim ({victim_words(victim_setting)})"


def attack_words(attack):
    """A frontier attack name (:func:`divqat.results.frontier.attack_of`) in words."""
    match = ATTACK_NAME.match(attack)
    base, options, parts = match["base"], match["options"], match["parts"].split("-")[1:]
    words = ATTACKS.get(base, f"{base} thief") + (f" ({options.replace(',', ', ')})" if options else "")
    epochs = SURROGATE_EPOCHS
    for part in parts:
        if part == "adaptive":
            words += ", adaptive"
        elif part.startswith("sharpen"):
            words += f", sharpening the answers (τ = {part[len('sharpen'):]})"
        elif part.endswith("ep"):
            epochs = int(part[:-2])
    return f"{words}, {epochs}-epoch surrogate"


SHORT = {"knockoff": "KnockoffNets", "copycat": "Copycat"}


def thief_name(attack):
    """A frontier attack name in a few words: ``KnockoffNets, sharpened (τ = 0.5), 10 ep``,
    ``sink-aware (max_share=0.3, mode=drop), 20 ep``."""
    match = ATTACK_NAME.match(attack)
    words = [SHORT.get(match["base"], match["base"]) + (f" ({match['options'].replace(',', ', ')})"
                                                         if match["options"] else "")]
    epochs = SURROGATE_EPOCHS
    for part in match["parts"].split("-")[1:]:
        if part == "adaptive":
            words.append("adaptive")
        elif part.startswith("sharpen"):
            words.append(f"sharpened (τ = {part[len('sharpen'):]})")
        else:
            epochs = int(part[:-2])
    return ", ".join(words + [f"{epochs} ep"])


def title(pair, victim_setting, attack, budget):
    """The plot's title in plain words."""
    victim, queries = pair.split("<-")
    name = lambda d: DATASETS.get(d, d)  # noqa: E731
    return (f"{name(victim)} victim ({victim_words(victim_setting)}) queried with {name(queries)} images\n"
            f"{attack_words(attack)}, {budget:,} queries")


def greek(text):
    """``alpha=1 beta=0.5`` as ``α=1 β=0.5``."""
    for word, letter in GREEK:
        text = text.replace(f"{word}=", f"{letter}=")
    return text


def setting_words(defense, setting):
    """``defense (setting)`` with Greek letters for the weights (α, β, ...)."""
    return f"{defense} ({greek(setting)})" if setting else defense


def thief_words(attack, epochs, budget):
    """An experiment cell's attack (its name, surrogate epochs, budget) in words."""
    epochs = f", {epochs:g}-epoch surrogate" if epochs else ""
    return f"{ATTACKS.get(attack, f'{attack} thief')}{epochs}, {budget:,} queries"
