"""The experiment runner with the real library pipeline on sklearn's digits: victims trained
by `divqat train` (fp teacher, int8 QAT victim), attacked through the BlackBox with and
without a defense, results cross-checked against the training run's own metrics."""
import json

import pytest

from divqat.experiments import parse_config, run_experiment
from divqat.experiments.pipeline import LibraryPipeline

RAW = {
    "name": "tiny", "seeds": [0],
    "data": {"victim": "digits", "queryset": "digits", "train_limit": 384, "test_limit": 120},
    "victim": {"arch": "smallcnn", "epochs": 1, "batch_size": 64},
    "quant": {"epochs": 1, "batch_size": 64},
    "methods": [{"name": "qat"}],
    "defenses": [{"name": "none"}, {"name": "dcp", "beta": 0.5}],
    "attacks": [{"name": "knockoff", "budget": [64, 128], "epochs": 1}],
    "robustness": {"attacks": ["fgsm"], "eps": [0.0, 0.2], "limit": 60},
}


def test_tiny_grid_end_to_end(tmp_path):
    out = tmp_path / "run"
    counts = run_experiment(parse_config(RAW), out, progress=False)
    assert counts == {"victims_trained": 2, "cells_run": 4, "cells_cached": 0}
    results = json.loads((out / "results.json").read_text())
    qat = next(v for v in results["victims"] if v["method"] == "qat")
    assert (out / "victims" / f"qat-seed0-{qat['key']}" / "model_int8.onnx").is_file()
    cells = {(c["defense"], c["budget"]): c for c in results["cells"]}
    # the undefended black box answers with the int8 victim: its accuracy is the one `divqat train` measured
    assert cells["none", 128]["victim_accuracy"] == pytest.approx(qat["int8_test_accuracy"])
    for c in cells.values():
        assert c["queries_used"] == c["budget"]
        assert c["adversary_error"] == pytest.approx(1 - c["adversary_accuracy"])
        assert 0 <= c["agreement"] <= 1
        assert 0 <= c["surrogate_robust_fgsm_0.2"] <= 1
    # largest budget first: the smaller budget's transfer set comes from the cache
    assert cells["none", 128]["fresh_queries"] == 128 and cells["none", 64]["fresh_queries"] == 0
    assert cells["dcp", 128]["fresh_queries"] == 128  # another defense, other answers
    assert cells["dcp", 128]["defense_l1"] > 0 and "defense_l1" not in cells["none", 128]
    # robustness of the int8 victim, on examples crafted on its fake-quantized model
    assert qat["robust_limit"] == 60 and 0 <= qat["robust_fgsm_0.2"] <= qat["robust_fgsm_0"] <= 1
    assert (out / "report.md").is_file() and (out / "robustness.png").is_file()
    assert run_experiment(parse_config(RAW), out, progress=False, report=False) == {
        "victims_trained": 0, "cells_run": 0, "cells_cached": 4}


@pytest.mark.parametrize("patch, match", [
    ({"victim": {"arch": "smallcnn", "colour": 3}}, "unknown to `divqat train`"),
    ({"victim": {"arch": "smallcnn", "epochs": "many"}}, "bad `divqat train` option"),
    ({"attacks": [{"name": "knockoff", "budget": 10, "flavour": 1}]}, "unknown parameters"),
    ({"attacks": [{"name": "steal", "budget": 10}]}, "unknown attack"),
])
def test_bad_options_fail_before_any_training(patch, match):
    with pytest.raises(ValueError, match=match):
        LibraryPipeline(parse_config({**RAW, **patch}), progress=False)


def test_thieves_record_answered_labels_and_the_mixed_thief_its_scoring_part(tmp_path):
    """Every thief's cell keeps the histogram of its answered labels (flattened to
    answered_hist_<class> columns); the mixed thief, drawing from test images 100.., is scored
    on test images 0..99 only: its victim accuracy is the int8 victim's there."""
    from divqat.data import load_tensors
    from divqat.metrics import accuracy, predict_logits
    from divqat.train import load_victim

    raw = {**RAW, "defenses": [{"name": "none"}], "robustness": {},
           "attacks": [{"name": "mixed", "budget": 100, "epochs": 1, "thief_from": 100, "in_share": 0.2},
                       {"name": "sink-aware", "budget": 100, "epochs": 1, "mode": "drop"}]}
    out = tmp_path / "run"
    run_experiment(parse_config(raw), out, progress=False, report=False)
    results = json.loads((out / "results.json").read_text())
    cells = {c["attack"]: c for c in results["cells"]}
    for cell in cells.values():
        assert sum(cell[f"answered_hist_{k}"] for k in range(10)) == cell["queries_used"] == 100
    qat = next(v for v in results["victims"] if v["method"] == "qat")
    x, y = load_tensors("digits", "test", limit=100)
    victim = load_victim(out / "victims" / f"qat-seed0-{qat['key']}")
    assert cells["mixed"]["scoring_images"] == 100 and "scoring_images" not in cells["sink-aware"]
    assert cells["mixed"]["victim_accuracy"] == pytest.approx(accuracy(predict_logits(victim, x), y))
