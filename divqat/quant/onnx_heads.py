"""The ONNX nodes of :class:`divqat.models.multihead.HeadSelect` inside the int8 graph: the head
chosen by a hash of head 0's answer, h = (2 argmax p + max(floor((10 max p - 1) * 2 / 9), 0))
mod K with p = softmax(head 0's logits), and that head's uint8 codes picked with
GatherElements (same scale and zero point, so the graph's final DequantizeLinear is unchanged).
The float arithmetic is the PyTorch module's, op for op, on the same dequantized logits.
"""
import numpy as np

__all__ = ["select_head", "HEAD_INDEX_HINT"]

HEAD_INDEX_HINT = "head_index"  # the int64 (N,) value of h is named head_index_<n>


def select_head(b, codes, qparams, heads, num_classes):
    """Append the selection to builder ``b`` (with ``qparam_inputs``) for uint8 ``codes``
    (N, heads * num_classes) quantized with ``qparams``; returns the (N, num_classes) codes."""
    i64, f32 = np.int64, np.float32
    stacked = b.node("Reshape", [codes, b.const("heads_shape", np.array([0, heads, num_classes], i64))], "heads")
    first_codes = b.node("Gather", [stacked, b.const("head0", np.array(0, i64))], "head0_codes", axis=1)
    first = b.node("DequantizeLinear", [first_codes, *b.qparam_inputs(qparams)], "head0_logits")
    probs = b.node("Softmax", [first], "head0_p", axis=-1)
    confidence = b.node("ReduceMax", [probs], "confidence", axes=[-1], keepdims=0)
    scaled = b.node("Mul", [confidence, b.const("ten", f32(10))], "conf10")
    scaled = b.node("Sub", [scaled, b.const("one", f32(1))], "conf10m1")
    scaled = b.node("Mul", [scaled, b.const("two", f32(2))], "conf_x2")
    scaled = b.node("Div", [scaled, b.const("nine", f32(9))], "conf_div9")
    bucket = b.node("Cast", [b.node("Relu", [b.node("Floor", [scaled], "floor")], "bucket_f")], "bucket", to=7)
    answer = b.node("ArgMax", [first], "head0_argmax", axis=-1, keepdims=0)
    hashed = b.node("Add", [b.node("Mul", [answer, b.const("two_i", i64(2))], "argmax_x2"), bucket], "hash")
    index = b.node("Mod", [hashed, b.const("heads", i64(heads))], HEAD_INDEX_HINT)
    index = b.node("Unsqueeze", [index, b.const("axes", np.array([1, 2], i64))], "head_index_3d")
    index = b.node("Expand", [index, b.const("row_shape", np.array([1, 1, num_classes], i64))], "gather_index")
    chosen = b.node("GatherElements", [stacked, index], "chosen", axis=1)
    return b.node("Squeeze", [chosen, b.const("axis1", np.array([1], i64))], "selected")
