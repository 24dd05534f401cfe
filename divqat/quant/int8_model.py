"""Int8Model: a converted integer model run by ONNX Runtime on CPU, wrapped as an eval-only
nn.Module (float images in [0, 1] in, float logits out), and its atomic .onnx save/load.

ONNX Runtime executes the QOperator nodes with its integer kernels (MLAS u8 x s8 GEMM with
int32 accumulation behind QLinearConv; QLinearAdd, QLinearAveragePool and
QLinearGlobalAveragePool on uint8 codes); ``kernel_op_types()`` lists the operators of the graph
after ORT's optimizer, which is how the tests check that no float Conv/Gemm/MatMul remains.
On x86 CPUs without VNNI, MLAS multiplies u8 x s8 with VPMADDUBSW, whose int16 pair sums can
saturate (ONNX Runtime's quantization docs); CPUs with AVX512-VNNI/AVX-VNNI accumulate in int32.
"""
import json
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from divqat.checks import check_int
from divqat.utils import atomic_write_bytes

__all__ = ["Int8Model", "save_int8", "load_int8"]

_META_KEY = "divqat"


class Int8Model(nn.Module):
    """An integer ONNX model as an eval-only module.

    Args:
        onnx_bytes: the serialized ONNX model (from ``convert`` or ``load_int8``).
        batch_size: inputs are run through ONNX Runtime in chunks of this many images.
    Attributes ``arch`` and ``meta`` come from the float model (stored in the ONNX metadata).
    The forward pass is not differentiable (integer kernels); inputs on any device are run on
    the CPU and the logits are returned on the input's device.
    """

    def __init__(self, onnx_bytes, batch_size=256):
        super().__init__()
        check_int("batch_size", batch_size, 1)
        try:
            proto = onnx.load_from_string(bytes(onnx_bytes))
        except Exception as exc:  # protobuf raises DecodeError and friends
            raise ValueError(f"onnx_bytes: not a valid ONNX model ({exc})") from exc
        if not proto.graph.input or not proto.graph.output:
            raise ValueError("onnx_bytes: not a valid ONNX model (no graph inputs or outputs)")
        props = {p.key: p.value for p in proto.metadata_props}
        info = json.loads(props.get(_META_KEY, "{}"))
        self.arch, self.meta = info.get("arch"), info.get("meta")
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        self.input_shape = tuple(d.dim_value for d in dims[1:])
        self.onnx_bytes = bytes(onnx_bytes)
        self.batch_size = batch_size
        self._session = None
        self.training = False

    def train(self, mode=True):
        if mode:
            raise RuntimeError("Int8Model is an inference-only integer model; it cannot be put in training mode")
        return super().train(False)

    def session(self):
        """The ONNX Runtime session (created on first use, CPU, torch's thread count)."""
        if self._session is None:
            self._session = _make_session(self.onnx_bytes)
        return self._session

    @torch.no_grad()
    def forward(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a (N, {', '.join(map(str, self.input_shape))}) tensor, got {got}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating tensor of images in [0, 1], got {x.dtype}")
        data = x.detach().to("cpu", torch.float32).contiguous().numpy()
        sess = self.session()
        outs = [sess.run(None, {sess.get_inputs()[0].name: data[i:i + self.batch_size]})[0]
                for i in range(0, len(data), self.batch_size)]
        if not outs:
            n_out = self.meta["num_classes"] if self.meta else 0
            return torch.empty(0, n_out, device=x.device)
        return torch.from_numpy(np.concatenate(outs)).to(x.device)

    def kernel_op_types(self):
        """Sorted operator types of the graph as ONNX Runtime optimizes and runs it."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "optimized.onnx")
            _make_session(self.onnx_bytes, optimized_path=path)
            return sorted({n.op_type for n in onnx.load(path).graph.node})

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_session"] = None
        return state

    def extra_repr(self):
        return f"arch={self.arch!r}, input_shape={self.input_shape}, batch_size={self.batch_size}"


def _make_session(onnx_bytes, optimized_path=None):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_path is not None:
        opts.optimized_model_filepath = optimized_path
    return ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def with_metadata(proto, arch, meta):
    """Record the float model's ``arch``/``meta`` in the ONNX metadata (returns ``proto``)."""
    entry = proto.metadata_props.add()
    entry.key, entry.value = _META_KEY, json.dumps({"arch": arch, "meta": meta})
    return proto


def save_int8(model, path):
    """Write ``model``'s ONNX file to ``path`` atomically (temporary file + os.replace)."""
    if not isinstance(model, Int8Model):
        raise ValueError(f"model must be an Int8Model (from divqat.quant.convert), got {type(model).__name__}")
    return atomic_write_bytes(model.onnx_bytes, path)


def load_int8(path, batch_size=256):
    """The Int8Model stored at ``path`` by ``save_int8``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no integer model at {path!s}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        return Int8Model(data, batch_size=batch_size)
    except ValueError as err:
        raise ValueError(f"int8 model {path}: {str(err).removeprefix('onnx_bytes: ')}") from None
