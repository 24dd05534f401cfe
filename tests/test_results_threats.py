"""Which defense for which threat (divqat.results.threats) on hand-made frontier rows whose best
defense is worked out by hand."""
import pytest

from divqat.results.threats import best_defenses, reads, threat_table
from divqat.results.words import thief_name

PAIR = "mnist<-fashion-mnist"


def _rows(defense, setting, thief, agreements, accuracy):
    return [{"pair": PAIR, "victim_setting": "full", "defense": defense, "setting": setting, "attack": thief,
             "budget": 5000, "seed": seed, "victim_accuracy": accuracy, "agreement": a, "adversary_error": 1 - a}
            for seed, a in enumerate(agreements)]


@pytest.mark.parametrize("attack, threat", [
    ("knockoff", "probabilities"), ("knockoff-20ep", "probabilities"), ("knockoff-sharpen0.5", "probabilities"),
    ("knockoff-adaptive", "probabilities"), ("knockoff-adaptive-20ep", "probabilities"),
    ("knockoff-sharpen0.5-20ep", "probabilities"), ("copycat(arch=lenet_caffe)-20ep", "labels"), ("copycat-20ep", "labels"),
    ("sink-aware(max_share=0.3,mode=drop)-20ep", "labels"), ("sink-aware(mode=drop,soft=True)-20ep", "probabilities"),
    ("smoothing(aggregate=vote,k=4)-20ep", "labels"), ("smoothing(k=4)-20ep", "probabilities"),
    ("mixed(in_share=0.1)-20ep", "labels")])
def test_reads_tells_labels_from_probabilities(attack, threat):
    assert reads(attack) == threat


def test_reads_refuses_an_unknown_thief():
    with pytest.raises(ValueError, match="'oracle-20ep': unknown thief"):
        reads("oracle-20ep")


def test_thief_name():
    assert thief_name("knockoff-sharpen0.5") == "KnockoffNets, sharpened (τ = 0.5), 10 ep"
    assert thief_name("sink-aware(max_share=0.3,mode=drop)-20ep") == "sink-aware (max_share=0.3, mode=drop), 20 ep"


def test_the_best_defense_is_judged_by_its_strongest_thief():
    sink = "sink-aware(mode=drop)-20ep"
    rows = (_rows("qat", "", "copycat-20ep", [0.70, 0.72, 0.68], 0.990) + _rows("qat", "", sink, [0.60] * 3, 0.990)
            # A: lowest Copycat agreement, but the sink-aware thief takes 0.50 from it
            + _rows("misinform", "a", "copycat-20ep", [0.20] * 3, 0.989) + _rows("misinform", "a", sink, [0.50] * 3, 0.989)
            # B: 0.40 under both thieves: the best
            + _rows("diverse", "b", "copycat-20ep", [0.40, 0.41, 0.39], 0.988) + _rows("diverse", "b", sink, [0.40] * 3, 0.988)
            # C: lower still, but costs 0.6 point of top-1
            + _rows("proxy-kl", "c", "copycat-20ep", [0.10] * 3, 0.984) + _rows("proxy-kl", "c", sink, [0.10] * 3, 0.984)
            # D: tried against Copycat alone: fewer thieves, so ranked after B however low
            + _rows("am", "d", "copycat-20ep", [0.05] * 3, 0.990))
    entry, = best_defenses(rows)
    assert entry["threat"] == "labels" and entry["defense"] == ("diverse", "b")
    assert entry["thief"] == "copycat-20ep" and entry["agreement"] == pytest.approx(0.40)
    assert entry["d_agreement"].mean_diff == pytest.approx(-0.30) and entry["d_agreement"].n == 3
    assert entry["d_top1"].mean_diff == pytest.approx(-0.002) and entry["untried"] == []
    table = threat_table([([entry], "[page](p.md)")])
    assert "| labels | MNIST (trained on all its training images) | diverse (b) | Copycat, 20 ep | 40.0 / 70.0 | " \
           "-30.00 [" in table and "| lowers it |" in table


def test_a_defense_tried_against_some_thieves_only_names_the_others():
    rows = (_rows("qat", "", "knockoff-20ep", [0.8] * 3, 0.99) + _rows("qat", "", "knockoff-sharpen0.5", [0.8] * 3, 0.99)
            + _rows("dcp", "beta=1", "knockoff-20ep", [0.3] * 3, 0.99))
    entry, = best_defenses(rows)
    assert entry["defense"] == ("dcp", "beta=1") and entry["untried"] == ["knockoff-sharpen0.5"]
    assert "KnockoffNets, sharpened (τ = 0.5), 10 ep" in threat_table([([entry], "x")])


def test_no_candidate_within_the_top1_cost():
    rows = _rows("qat", "", "copycat", [0.7] * 3, 0.99) + _rows("misinform", "", "copycat", [0.2] * 3, 0.98)
    entry, = best_defenses(rows)
    assert entry["defense"] is None
    assert "none within the top-1 cost" in threat_table([([entry], "x")])
