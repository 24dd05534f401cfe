"""The defended model file: the int8 victim followed by its defense as ONNX operators.

    divqat export --victim DIR [--defense NAME --defense-arg k=v ...] --out FILE.onnx

DIR is a quantized ``divqat train --out`` directory; its integer graph (``model_int8.onnx``,
built by :mod:`divqat.quant.onnx_export`) is composed with a second graph (``onnx.compose``)
that maps the logits z (N, C) to the answers a client receives:

    p = softmax(z)                                            (every answer starts here)
    none            a = p
    dcp             a = (p - g * r) / sum_k (p - g * r)_k,     g = sigmoid(nu * (beta - max_k p_k)),
                    r = beta * (sigmoid(gamma * logodds(p)) - 1/2)       (arXiv 2309.01838)
    reverse_sigmoid a ∝ max(0, p - beta * (sigmoid(gamma * logodds(p)) - 1/2))   (Lee et al. 2019)
    rounding        largest-remainder rounding to 10^-d, in float64              (Tramer et al. 2016)
    topk            a ∝ p on the k largest entries, 0 elsewhere                   (Orekondy et al. 2019)
    label_only      a = one-hot(argmax_k p_k)

with logodds(p) = log(clamp(p / (1 - p), 1e-12, odds_max)), each formula the one of the
Python class in :mod:`divqat.defenses`, in the same operation order. The softmax and the
defense run in float64 and the answers are cast to float32: the file's answers equal the Python
defense applied to the float64 softmax of the same int8 logits (the tests hold them to 1e-6).
:class:`~divqat.blackbox.BlackBox` computes the softmax and DCP in float32, whose rounding DCP's
gate sigmoid(nu * (beta - max p)) amplifies by up to nu/4 = 250 on rows with max p near beta:
there the two differ by a few float32 roundings times that factor (the float64 file is the
closer one to the exact value). Top-k keeps the lowest class index among
tied probabilities (ONNX TopK's rule; torch.topk leaves the choice unspecified, and int8 logits
tie often). The defense's parameters are read through its public ``params()``.

Refused, with the reason: MAD and adaptive misinformation (each runs a second, float network
on the query inputs, which this graph does not contain) and random noise (its noise is a
seeded torch random stream that ONNX Runtime cannot reproduce).

The file's metadata keeps the victim's ``divqat`` entry (arch, meta) and adds
``divqat_serving``: the defense's name and what the answers are, never its parameters.
"""
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from divqat.checks import error_line
from divqat.defenses import DCP, LabelOnly, ReverseSigmoid, Rounding, TopK, build_defense
from divqat.defenses.base import ODDS_MAX, ODDS_MIN
from divqat.defenses.dcp import CAPPED_ODDS_MAX
from divqat.defenses.registry import resolve_name
from divqat.quant.onnx_export import OUTPUT_NAME
from divqat.quant.onnx_graph import GraphBuilder
from divqat.serving.metadata import SERVING_KEY, VICTIM_KEY, metadata

__all__ = ["REFUSED", "ANSWERS", "ANSWERS_NAME", "export_defended", "defense_onnx", "build_exportable_defense",
           "load_victim_onnx"]

#: defenses that cannot be exported, and why (one line each)
REFUSED = {
    "mad": "MAD runs the defender's surrogate network on every query and searches the answers that turn its "
           "gradient most (up to 2^(C-1) candidates); the exported graph holds only the victim and closed-form "
           "maps of its probabilities",
    "adaptive_misinformation": "adaptive misinformation runs a second (misinformation) network on the query "
                               "inputs; the exported graph holds only the victim and closed-form maps of its "
                               "probabilities",
    "random_noise": "random noise draws from a seeded torch random stream that ONNX Runtime cannot reproduce, "
                    "so the file could not answer as the Python defense does",
}

#: what the answers are, per defense (None: no defense)
ANSWERS = {None: "probabilities", "dcp": "probabilities", "reverse_sigmoid": "probabilities",
           "rounding": "rounded probabilities", "topk": "top-k probabilities", "label_only": "label"}

ANSWERS_NAME = "answers"
_PREFIX = "defense_"


def build_exportable_defense(name, args=None):
    """``(canonical name, defense)`` for ``--defense NAME --defense-arg ...``; ValueError naming the
    defense, with the reason, for one that cannot be exported (checked before building it)."""
    key = resolve_name(name)
    if key in REFUSED:
        raise ValueError(f"--defense {name}: cannot be exported to ONNX: {REFUSED[key]}")
    return key, build_defense(key, **(args or {}))


class _Graph(GraphBuilder):
    """Nodes and float/int constants of the defense graph, every name prefixed ``defense_``."""

    def __init__(self):
        super().__init__(prefix=_PREFIX)

    def constant(self, value, dtype=np.float64):
        return self.const("const", np.asarray(value, dtype=dtype))

    def op(self, op_type, *inputs, outputs=1, **attrs):
        return self.node(op_type, inputs, op_type.lower(), outputs=outputs, **attrs)

    def row_sum(self, x):
        return self.op("ReduceSum", x, self.constant([1], np.int64), keepdims=1)

    def normalised(self, y):
        return self.op("Div", y, self.row_sum(y))

    def log_odds(self, p, odds_max):
        """log(clamp(p / (1 - p), ODDS_MIN, odds_max)) after clamping p to [0, 1] (defenses.base.log_odds)."""
        p = self.op("Clip", p, self.constant(0.0), self.constant(1.0))
        odds = self.op("Div", p, self.op("Sub", self.constant(1.0), p))
        return self.op("Log", self.op("Clip", odds, self.constant(ODDS_MIN), self.constant(odds_max)))

    def centred_sigmoid(self, z, gamma, beta):
        """beta * (sigmoid(gamma * z) - 1/2)."""
        s = self.op("Sigmoid", self.op("Mul", self.constant(gamma), z))
        return self.op("Mul", self.constant(beta), self.op("Sub", s, self.constant(0.5)))


def _dcp(g, p, params, num_classes):
    s = g.op("ReduceMax", p, axes=[1], keepdims=1)
    a = g.op("Sigmoid", g.op("Mul", g.constant(params["nu"]), g.op("Sub", g.constant(params["beta"]), s)))
    z = g.log_odds(p, CAPPED_ODDS_MAX if params["cap_log_odds"] else ODDS_MAX)
    y = g.op("Sub", p, g.op("Mul", a, g.centred_sigmoid(z, params["gamma"], params["beta"])))
    if not params["cap_log_odds"]:
        y = g.op("Max", y, g.constant(0.0))
    return g.normalised(y)


def _reverse_sigmoid(g, p, params, num_classes):
    z = g.log_odds(p, ODDS_MAX)
    y = g.op("Max", g.op("Sub", p, g.centred_sigmoid(z, params["gamma"], params["beta"])), g.constant(0.0))
    return g.normalised(y)


def _topk(g, p, params, num_classes):
    k = params["k"]
    if k > num_classes:
        raise ValueError(f"--defense-arg k: must be <= the victim's {num_classes} classes, got {k}")
    values, index = g.op("TopK", p, g.constant([k], np.int64), outputs=2, axis=1, largest=1, sorted=1)
    zeros = g.op("ConstantOfShape", g.op("Shape", p), value=numpy_helper.from_array(np.zeros(1, np.float64)))
    kept = g.op("ScatterElements", zeros, index, values, axis=1)
    tiny = g.constant(np.finfo(np.float64).tiny)
    return g.op("Div", kept, g.op("Max", g.row_sum(kept), tiny))


def _rounding(g, p, params, num_classes):
    """Largest remainder in float64; ties of the remainder go to the lower class index (ONNX
    TopK's order, the stable descending argsort of the Python class)."""
    scale = g.constant(10.0 ** params["decimals"])
    units = g.op("Mul", g.op("Div", p, g.row_sum(p)), scale)
    base = g.op("Floor", units)
    missing = g.op("Clip", g.op("Round", g.op("Sub", scale, g.row_sum(base))),
                   g.constant(0.0), g.constant(float(num_classes)))
    _, order = g.op("TopK", g.op("Sub", units, base), g.constant([num_classes], np.int64), outputs=2,
                    axis=1, largest=1, sorted=1)
    positions = g.op("Expand", g.constant(np.arange(num_classes), np.int64), g.op("Shape", order))
    zeros = numpy_helper.from_array(np.zeros(1, np.int64))
    rank = g.op("ScatterElements", g.op("ConstantOfShape", g.op("Shape", order), value=zeros), order, positions, axis=1)
    bonus = g.op("Cast", g.op("Less", g.op("Cast", rank, to=TensorProto.DOUBLE), missing), to=TensorProto.DOUBLE)
    return g.op("Div", g.op("Add", base, bonus), scale)


def _label_only(g, p, params, num_classes):
    label = g.op("ArgMax", p, axis=1, keepdims=0, select_last_index=0)
    one_hot = g.op("OneHot", label, g.constant(num_classes, np.int64), g.constant([0.0, 1.0], np.float32), axis=-1)
    return g.op("Cast", one_hot, to=TensorProto.DOUBLE)


_BUILDERS = {DCP: _dcp, ReverseSigmoid: _reverse_sigmoid, TopK: _topk, Rounding: _rounding, LabelOnly: _label_only}


def defense_onnx(defense, num_classes, like):
    """The graph logits (N, C) -> answers (N, C) for ``defense`` (None: softmax only), with the
    opsets and IR version of ``like`` (the victim's ModelProto) so the two compose."""
    builder = None if defense is None else _BUILDERS.get(type(defense))
    if defense is not None and builder is None:
        raise ValueError(f"--defense: {type(defense).__name__} has no ONNX export")
    g = _Graph()
    logits = _PREFIX + "logits"
    p = g.op("Softmax", g.op("Cast", logits, to=TensorProto.DOUBLE), axis=1)
    answers = p if builder is None else builder(g, p, defense.params(), num_classes)
    g.nodes.append(helper.make_node("Cast", [answers], [ANSWERS_NAME], name=ANSWERS_NAME, to=TensorProto.FLOAT))
    graph = helper.make_graph(
        g.nodes, "divqat_defense",
        [helper.make_tensor_value_info(logits, TensorProto.FLOAT, ["batch", num_classes])],
        [helper.make_tensor_value_info(ANSWERS_NAME, TensorProto.FLOAT, ["batch", num_classes])],
        initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=list(like.opset_import), producer_name="divqat")
    model.ir_version = like.ir_version
    return model


def load_victim_onnx(victim_dir):
    """The integer ModelProto of a quantized ``divqat train --out`` directory (ValueError if there is none)."""
    from divqat.train.artifacts import MODEL_INT8, load_config

    config = load_config(victim_dir)
    path = Path(victim_dir) / MODEL_INT8
    if not config.get("quantized") or not path.is_file():
        raise ValueError(f"--victim {victim_dir}: no integer model ({MODEL_INT8}) there; export needs a quantized "
                         f"run (method ptq, qat or divqat), got method {config.get('method')!r}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as err:  # protobuf's DecodeError, onnx's ValidationError: the file is damaged
        raise ValueError(f"--victim {victim_dir}: {path} is not a valid ONNX model (damaged or truncated: "
                         f"{error_line(err)})") from None
    return model


def export_defended(victim, defense_name=None, defense=None):
    """The defended ModelProto: the integer ``victim`` (a ModelProto, or a quantized run directory)
    composed with ``defense`` (a divqat defense object of the exportable kinds, or None), whose
    canonical registry name ``defense_name`` is recorded in the metadata."""
    victim = victim if isinstance(victim, onnx.ModelProto) else load_victim_onnx(victim)
    info = json.loads(metadata(victim).get(VICTIM_KEY, "{}"))
    if not info.get("meta"):
        raise ValueError("--victim: the integer model carries no divqat metadata (arch, meta)")
    num_classes = int(info["meta"]["num_classes"])
    tail = defense_onnx(defense, num_classes, victim)
    merged = onnx.compose.merge_models(victim, tail, io_map=[(OUTPUT_NAME, tail.graph.input[0].name)])
    entry = merged.metadata_props.add()
    entry.key = SERVING_KEY
    entry.value = json.dumps({"defense": defense_name, "answers": ANSWERS[defense_name]})
    onnx.checker.check_model(merged)
    return merged
