"""The statistics of the extraction monitors (divqat.detection) against independent oracles:
scipy.stats.shapiro on hand-trimmed distances, hand-computed distances and thresholds of
PRADA's growing set, a float64 CUSUM written here, hand-computed and scipy KL, numpy
quantiles; the state codec without pickle; threshold errors naming the option."""
import io
import math

import numpy as np
import pytest
from scipy.stats import entropy, shapiro

from divqat.detection.calibration import calibrate
from divqat.detection.classes import ClassHistogram, histogram_kl
from divqat.detection.codec import decode_state, encode_state
from divqat.detection.confidence import ConfidenceCusum
from divqat.detection.prada import Prada, prada_w
from divqat.detection.registry import build_monitors, parse_monitors


def _one_hot(classes, num_classes):
    return np.eye(num_classes)[np.asarray(classes)]


def test_codec_round_trip_and_refuses_pickled_objects():
    state = {"n": np.int64(7), "alarmed": np.bool_(True), "stored": np.arange(6, dtype=np.float16).reshape(2, 3)}
    back = decode_state(encode_state(state))
    assert set(back) == set(state) and int(back["n"]) == 7 and bool(back["alarmed"])
    np.testing.assert_array_equal(back["stored"], state["stored"])
    assert back["stored"].dtype == np.float16 and back["stored"].flags.writeable
    buffer = io.BytesIO()
    np.savez(buffer, evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        decode_state(buffer.getvalue())


def test_prada_w_is_shapiro_after_removing_3_sigma_outliers():
    rng = np.random.default_rng(0)
    d = np.concatenate([rng.normal(5, 1, 300), [40.0, 45.0]])  # two outliers
    mean, sd = sum(d) / len(d), math.sqrt(sum((v - sum(d) / len(d)) ** 2 for v in d) / len(d))
    kept = [v for v in d if mean - 3 * sd <= v <= mean + 3 * sd]
    assert len(kept) == 300
    assert prada_w(d) == pytest.approx(shapiro(kept).statistic, abs=1e-12)
    assert prada_w(np.full(200, 3.0)) == 0.0  # duplicates: constant distances


def test_prada_growing_set_distances_and_thresholds_by_hand():
    """Class 0 in 2-D: (0,0) starts G_0; (3,4) is at 5 > T=0 and joins (T = 5 - 0 = 5);
    (0,1) is at 1 <= 5 and does not join; (6,8) is at 5 from (3,4), not > 5, and does not
    join; (9,12) is at 10 from (3,4) (the nearest stored) and joins, T = max(5, mean(5, 10) -
    std(5, 10)) = max(5, 7.5 - 2.5) = 5."""
    monitor = Prada(num_classes=2, dim=2, delta=0.5)
    state = monitor.new_state()
    points = np.array([[0, 0], [3, 4], [0, 1], [6, 8], [9, 12]], np.float32)
    assert monitor.update(state, points, _one_hot([0] * 5, 2)) is None
    np.testing.assert_allclose(state["distances"], [5, 1, 5, 10])
    np.testing.assert_array_equal(state["stored"].astype(np.float32), [[0, 0], [3, 4], [9, 12]])
    assert state["thresholds"][0] == pytest.approx(5.0) and state["thresholds"][1] == 0
    assert int(state["n"]) == 5
    # a point of class 1 starts G_1 and adds no distance
    monitor.update(state, np.array([[1, 1]], np.float32), _one_hot([1], 2))
    assert len(state["distances"]) == 4 and list(state["stored_class"]) == [0, 0, 0, 1]


def test_prada_stores_at_most_max_stored_queries():
    monitor = Prada(num_classes=1, dim=4, max_stored=5)
    state = monitor.new_state()
    x = np.arange(40, dtype=np.float32).reshape(10, 4) ** 2  # ever farther apart: every one would join
    monitor.update(state, x, _one_hot([0] * 10, 1))
    assert len(state["stored"]) == 5 and len(state["distances"]) == 9


def test_prada_flags_perturbation_streams_not_gaussian_queries():
    """Queries spread like natural images (independent Gaussian vectors: nearly normal distances)
    pass; JBDA-like queries (a few seeds plus +-0.1 sign steps) fail at the alarm's W, which the
    test recomputes with scipy from the state's distances."""
    rng = np.random.default_rng(1)
    monitor = Prada(num_classes=10, dim=64)
    honest = rng.uniform(0, 1, (600, 64)).astype(np.float32)
    state = monitor.new_state()
    assert monitor.update(state, honest, _one_hot(rng.integers(0, 10, 600), 10)) is None
    seeds = rng.uniform(0, 1, (10, 64))
    steps = 0.1 * np.sign(rng.normal(size=(600, 64)))
    jbda = np.clip(seeds[rng.integers(0, 10, 600)] + steps * rng.integers(0, 2, (600, 1)), 0, 1).astype(np.float32)
    state = monitor.new_state()
    alarm = monitor.update(state, jbda, _one_hot(rng.integers(0, 10, 600), 10))
    assert alarm is not None and alarm.monitor == "prada" and alarm.query % 10 == 0
    assert alarm.statistic < 0.90
    assert bool(state["alarmed"]) and int(state["n"]) == 600


def _cusum_reference(unsure, p0, p1, h):
    """Page's CUSUM in float64, written independently: the 1-based index of the first S > h."""
    s = 0.0
    for i, u in enumerate(unsure, 1):
        s = max(0.0, s + (math.log(p1 / p0) if u else math.log((1 - p1) / (1 - p0))))
        if s > h:
            return i, s
    return None, s


def test_cusum_matches_a_float64_reference():
    rng = np.random.default_rng(2)
    p0, ratio, h, tau = 0.05, 4.0, 6.0, 0.7
    confidence = np.where(rng.uniform(size=3000) < np.r_[np.full(1500, p0), np.full(1500, 0.3)], 0.5, 0.95)
    probs = np.stack([confidence, 1 - confidence], axis=1)
    expected_query, expected_s = _cusum_reference(confidence < tau, p0, ratio * p0, h)
    monitor = ConfidenceCusum(tau, p0, ratio, h)
    state = monitor.new_state()
    alarms = [monitor.update(state, np.zeros((64, 1)), probs[i:i + 64]) for i in range(0, 3000, 64)]
    alarm = next(a for a in alarms if a is not None)
    assert expected_query > 1500 and alarm.query == expected_query
    assert alarm.statistic == pytest.approx(expected_s, rel=1e-12)
    assert sum(a is not None for a in alarms) == 1  # once


def test_cusum_in_distribution_stream_runs_long():
    """At the calibrated rate p0 the mean run to a false alarm is >= e^h (Lorden); h = 12: none in 20,000."""
    rng = np.random.default_rng(3)
    confidence = np.where(rng.uniform(size=20000) < 0.05, 0.5, 0.95)
    monitor = ConfidenceCusum(0.7, 0.05)
    assert monitor.update(monitor.new_state(), np.zeros((20000, 1)), np.stack([confidence, 1 - confidence], 1)) is None


def test_histogram_kl_by_hand_and_against_scipy():
    assert histogram_kl([3, 1], [0.5, 0.5]) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-15)
    rng = np.random.default_rng(4)
    counts, prior = rng.integers(0, 50, 10), rng.dirichlet(np.ones(10))
    assert histogram_kl(counts, prior) == pytest.approx(entropy(counts / counts.sum(), prior), rel=1e-12)


def test_class_histogram_waits_for_min_count_then_flags_two_classes():
    prior = np.full(10, 0.1)
    monitor = ClassHistogram(prior, threshold=0.2, min_count=50)
    state = monitor.new_state()
    classes = np.tile([0, 1], 40)
    alarm = monitor.update(state, np.zeros((80, 1)), _one_hot(classes, 10))
    assert alarm.query == 50 and alarm.statistic == pytest.approx(math.log(5), abs=1e-12)  # KL of {0,1} vs uniform
    honest = ClassHistogram(prior, threshold=0.2, min_count=50)
    assert honest.update(honest.new_state(), np.zeros((1000, 1)), _one_hot(np.arange(1000) % 10, 10)) is None


def test_calibration_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45], [0.2, 0.8]])
    cal = calibrate(probs, quantile=0.25, source="five rows")
    assert cal["tau"] == pytest.approx(np.quantile([0.9, 0.6, 0.7, 0.55, 0.8], 0.25))  # 0.6
    assert cal["unsure_rate"] == pytest.approx(1 / 5)  # only 0.55 < 0.6
    assert cal["prior"] == pytest.approx([(3 + 1) / 7, (2 + 1) / 7]) and cal["images"] == 5
    with pytest.raises(ValueError, match="--quantile"):
        calibrate(probs, quantile=0.0)


@pytest.mark.parametrize("thresholds, match", [
    ({"prada_delta": 1.5}, "--prada-delta must be in (0, 1]"),
    ({"prada_delta": 0}, "--prada-delta"),
    ({"prada_stored": 0}, "--prada-stored must be >= 1"),
    ({"prada_window": 50}, "--prada-window must be >= 101"),
    ({"ood_ratio": 1.0}, "--ood-ratio must be > 1"),
    ({"ood_ratio": 30.0}, "--ood-ratio must be < 1/p0 = 20"),
    ({"ood_threshold": -1.0}, "--ood-threshold must be > 0"),
    ({"classes_kl": 0.0}, "--classes-kl must be > 0"),
    ({"classes_min_count": 0}, "--classes-min-count must be >= 1"),
])
def test_bad_thresholds_name_the_option(tmp_path, thresholds, match):
    cal = tmp_path / "cal.json"
    cal.write_text('{"tau": 0.7, "unsure_rate": 0.05, "prior": [0.5, 0.5], "quantile": 0.05, "images": 9, '
                   '"source": "x"}')
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        build_monitors(("prada", "ood", "classes"), thresholds, 2, (1, 2, 2), cal)


def test_monitor_names_and_calibration_errors(tmp_path):
    assert parse_monitors("prada, ood") == ("prada", "ood")
    for bad in ("", "prada,prada", "prada,energy"):
        with pytest.raises(ValueError, match="--monitors must be distinct names among prada, ood, classes"):
            parse_monitors(bad)
    with pytest.raises(ValueError, match="--calibration: monitors ood need"):
        build_monitors(("prada", "ood"), {}, 2, (1, 2, 2))
    with pytest.raises(FileNotFoundError, match="divqat detect calibrate"):
        build_monitors(("classes",), {}, 2, (1, 2, 2), tmp_path / "none.json")
