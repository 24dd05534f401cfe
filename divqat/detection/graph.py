"""The served model with the victim's logits as a second output: the monitors read the victim's
own probabilities, whatever the defense makes of them for the client."""
import numpy as np
import onnx
from onnx import TensorProto, helper

from divqat.quant.onnx_export import OUTPUT_NAME

__all__ = ["expose_logits", "softmax64"]


def expose_logits(model):
    """A copy of a defended ModelProto (:func:`divqat.serving.export.export_defended`) whose outputs
    are (answers, logits); ValueError if it has no ``logits`` tensor."""
    model = model if isinstance(model, onnx.ModelProto) else onnx.load_from_string(bytes(model))
    if not any(OUTPUT_NAME in node.output for node in model.graph.node):
        raise ValueError(f"--victim: the model has no {OUTPUT_NAME!r} tensor for the monitors to read")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if OUTPUT_NAME not in [o.name for o in model.graph.output]:
        num_classes = model.graph.output[0].type.tensor_type.shape.dim[1]
        shape = ["batch", num_classes.dim_value or num_classes.dim_param]
        model.graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, shape))
    return model


def softmax64(logits):
    """Row softmax of ``logits`` in float64 (the defended graph's first step, see divqat.serving.export)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
