"""``prepare_qat``: a torch.fx rewrite of a float model into a fake-quantized QAT model.

The pass (Jacob et al., CVPR 2018, §3; Krishnamoorthi 2018, §3.2) on the fx graph:

1. fuse  Conv2d [-> BatchNorm2d] [-> ReLU]  into QATConv2d (BN folded into the weight),
         BatchNorm2d [-> ReLU] left alone    into QATConv2d (identity depthwise conv + BN),
         Linear [-> ReLU]                    into QATLinear,
         Add / ``a + b`` [-> ReLU]           into QATAdd,
         AvgPool2d, AdaptiveAvgPool2d(1)     into QATAvgPool2d;
   each of these quantizes its output after the fused ReLU (``output_fake_quant``), its
   weight with the qconfig's weight quantizer;
2. every input of those modules that is not already quantized gets an activation
   FakeQuantize (so the model's input is quantized right after its Normalize layer);
3. MaxPool2d, Flatten, ReLU, Dropout and Identity pass quantization through (they map
   quantized values onto quantized values); Normalize is computed in float before it;
4. every QATConv2d/QATLinear gets the scale of its input quantizer as a second argument, so
   in eval mode it rounds its bias as the integer model does (see qat_modules).

Any other operation raises ValueError, so a prepared model always converts (divqat.quant.convert).
"""
import copy
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from divqat.models.layers import Add, Normalize
from divqat.models.multihead import HeadSelect
from divqat.quant.fake_quantize import FakeQuantize
from divqat.quant.qat_modules import QATAdd, QATAvgPool2d, QATConv2d, QATLinear
from divqat.quant.qconfig import QConfig, default_qconfig
from divqat.utils import model_device

__all__ = ["prepare_qat", "QUANTIZED_MODULES", "called_module", "is_passthrough", "is_prepared"]

QUANTIZED_MODULES = (QATConv2d, QATLinear, QATAdd, QATAvgPool2d)
_PASSTHROUGH_MODULES = (nn.MaxPool2d, nn.ReLU, nn.Dropout, nn.Identity, HeadSelect)  # HeadSelect picks codes


class _Tracer(fx.Tracer):
    """Keeps Normalize and Add as single nodes (they are quantization boundaries), and the
    head selection of a multi-head model (one node the int8 exporter translates)."""

    def is_leaf_module(self, m, qualname):
        return isinstance(m, (Normalize, Add, HeadSelect)) or super().is_leaf_module(m, qualname)


def called_module(gm, node):
    """The submodule a call_module node runs; None for any other node."""
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _is_relu(gm, node):
    if node.op == "call_module":
        return type(called_module(gm, node)) is nn.ReLU
    if node.op == "call_function":
        return node.target in (F.relu, torch.relu)
    return node.op == "call_method" and node.target == "relu"


def _is_add(gm, node):
    if node.op == "call_module":
        return isinstance(called_module(gm, node), Add)
    return (node.op == "call_function" and node.target in (operator.add, torch.add) and not node.kwargs
            and len(node.args) == 2 and all(isinstance(a, fx.Node) for a in node.args))


def _is_flatten(gm, node):
    """Flatten of every dimension after the batch one (module, function or method form)."""
    if node.op == "call_module":
        m = called_module(gm, node)
        return isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1
    if node.op in ("call_function", "call_method") and node.target in (torch.flatten, "flatten"):
        args = list(node.args[1:]) + [node.kwargs.get(k) for k in ("start_dim", "end_dim") if k in node.kwargs]
        return args in ([1], [1, -1])
    return False


def is_passthrough(gm, node):
    """True for operations that map quantized values onto the same quantization grid."""
    if node.op == "call_module" and isinstance(called_module(gm, node), _PASSTHROUGH_MODULES):
        m = called_module(gm, node)
        return not (isinstance(m, nn.MaxPool2d) and m.return_indices)
    return _is_relu(gm, node) or _is_flatten(gm, node)


def _sole_user(node):
    return next(iter(node.users)) if len(node.users) == 1 else None


def _absorb_relu(gm, chain):
    """Extend ``chain`` with a ReLU that is the only user of its last node; return whether it did."""
    nxt = _sole_user(chain[-1])
    if nxt is not None and _is_relu(gm, nxt):
        chain.append(nxt)
        return True
    return False


def _collapse(chain, erased):
    """Make chain[0] stand for the whole chain and erase the others (recorded in ``erased``)."""
    chain[-1].replace_all_uses_with(chain[0])
    for n in reversed(chain[1:]):
        n.graph.erase_node(n)
        erased.add(n)


def _fuse(gm, qconfig):
    """Step 1 of the module docstring, in place on ``gm``."""
    graph, w, a = gm.graph, qconfig.weight, qconfig.activation
    erased = set()
    for node in list(graph.nodes):
        if node in erased:  # folded into an earlier chain
            continue
        m = called_module(gm, node)
        chain = [node]
        if isinstance(m, nn.Conv2d):
            nxt = _sole_user(node)
            bn = called_module(gm, nxt) if nxt is not None else None
            bn = bn if isinstance(bn, nn.BatchNorm2d) else None
            if bn is not None:
                chain.append(nxt)
            relu = _absorb_relu(gm, chain)
            qat = QATConv2d(m, bn, relu, w.make(m.out_channels), a.make())
        elif isinstance(m, nn.BatchNorm2d):
            qat = QATConv2d.from_batchnorm(m, _absorb_relu(gm, chain), w.make(m.num_features), a.make())
        elif isinstance(m, nn.Linear):
            qat = QATLinear(m, _absorb_relu(gm, chain), w.make(m.out_features), a.make())
        elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            qat = QATAvgPool2d(m, a.make())
        elif _is_add(gm, node):
            qat = QATAdd(_absorb_relu(gm, chain), a.make())
            if node.op != "call_module":
                name = f"{node.name}_qat"
                gm.add_submodule(name, qat)
                with graph.inserting_after(node):
                    new = graph.call_module(name, node.args)
                node.replace_all_uses_with(new)
                graph.erase_node(node)
                chain[0] = new
        else:
            continue
        gm.add_submodule(chain[0].target, qat)
        _collapse(chain, erased)


def _insert_input_quantizers(gm, qconfig):
    """Step 2 and 3 of the module docstring: track which values are quantized, quantize the
    float inputs of quantized modules (one FakeQuantize per float value)."""
    graph = gm.graph
    quantized, quantizer_of = {}, {}
    for node in list(graph.nodes):
        if node.op == "placeholder":
            quantized[node] = False
        elif node.op == "output":
            continue
        elif isinstance(called_module(gm, node), QUANTIZED_MODULES):
            for arg in node.args:
                if not isinstance(arg, fx.Node):
                    raise ValueError(f"prepare_qat: {node.format_node()} has a non-tensor input {arg!r}")
                if not quantized[arg]:
                    if arg not in quantizer_of:
                        name = f"{arg.name}_fake_quant"
                        gm.add_submodule(name, qconfig.activation.make())
                        with graph.inserting_after(arg):
                            quantizer_of[arg] = graph.call_module(name, (arg,))
                        quantized[quantizer_of[arg]] = True
                    node.replace_input_with(arg, quantizer_of[arg])
            quantized[node] = True
        elif is_passthrough(gm, node):
            quantized[node] = quantized[node.args[0]]
        elif isinstance(called_module(gm, node), Normalize):
            quantized[node] = False
        else:
            raise ValueError(f"prepare_qat: unsupported operation: {_describe(gm, node)}; supported: {SUPPORTED}")


SUPPORTED = ("Normalize, Conv2d, BatchNorm2d, Linear, ReLU, Add (module or a + b), MaxPool2d, AvgPool2d, "
             "AdaptiveAvgPool2d(1), Flatten(1), Dropout, Identity")


def _describe(gm, node):
    """The operation of ``node`` as a user wrote it: layer type and module path, or the function."""
    if node.op == "call_module":
        return f"layer {type(called_module(gm, node)).__name__} at {node.target!r}"
    where = next((f" (input from {a.target!r})" for a in node.args
                  if isinstance(a, fx.Node) and a.op == "call_module"), "")
    if node.op == "call_method":
        return f"tensor method .{node.target}(){where}"
    return f"function {fx.node._get_qualified_name(node.target)}{where}"


def _quantizer_path(gm, node):
    """Qualified name of the FakeQuantize that produced the (quantized) value of ``node``."""
    while True:
        m = called_module(gm, node)
        if isinstance(m, FakeQuantize):
            return node.target
        if isinstance(m, QUANTIZED_MODULES):
            return f"{node.target}.output_fake_quant"
        node = node.args[0]  # a pass-through operation


def _link_input_scales(gm):
    """Step 4 of the module docstring."""
    for node in list(gm.graph.nodes):
        if isinstance(called_module(gm, node), (QATConv2d, QATLinear)):
            with gm.graph.inserting_before(node):
                scale = gm.graph.get_attr(f"{_quantizer_path(gm, node.args[0])}.scale")
            node.args = (node.args[0], scale)


def _trace(model):
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types; the message names the cause
        raise ValueError(f"model: cannot be traced by torch.fx ({type(exc).__name__}: {exc})") from exc
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ValueError(f"model: prepare_qat needs a forward with exactly one input, got {len(placeholders)}")
    return fx.GraphModule(model, graph, model.__class__.__name__)


def prepare_qat(model, qconfig=None):
    """A new fake-quantized copy of ``model`` in train mode (the original is untouched).

    Args:
        model: float nn.Module, torch.fx-traceable, built from the layers the module docstring
            lists (every divqat.models architecture is).
        qconfig: a QConfig; default ``default_qconfig()`` (int8 per-channel symmetric weights,
            uint8 per-tensor affine activations, moving-average min/max observers).

    Returns an ``fx.GraphModule`` that keeps the model's ``.arch``/``.meta`` and records
    ``.qconfig``.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    qconfig = default_qconfig() if qconfig is None else qconfig
    if not isinstance(qconfig, QConfig):
        origin = type(qconfig).__module__
        hint = (" (torch.ao.quantization qconfigs do not apply: divqat has its own quantizers)"
                if origin.startswith("torch.ao") else "")
        raise ValueError(f"qconfig must be a divqat.quant.QConfig{hint}, got {origin}.{type(qconfig).__name__}; "
                         "pass divqat.quant.get_qconfig(weight_bits=8, act_bits=8) or default_qconfig()")
    if is_prepared(model):
        raise ValueError("model is already prepared for QAT (it contains FakeQuantize modules)")
    device = model_device(model)
    gm = _trace(copy.deepcopy(model))
    _fuse(gm, qconfig)
    _insert_input_quantizers(gm, qconfig)
    _link_input_scales(gm)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.to(device)  # the new quantizers are created on the CPU
    for attr in ("arch", "meta"):
        if hasattr(model, attr):
            setattr(gm, attr, copy.deepcopy(getattr(model, attr)))
    gm.qconfig = qconfig
    return gm.train()


def is_prepared(model):
    """True when ``model`` contains fake quantizers (the output of ``prepare_qat``)."""
    return any(isinstance(m, FakeQuantize) for m in model.modules())
