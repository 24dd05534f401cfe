"""What a defended model file says about itself (its ONNX metadata), readable without torch.

``divqat`` (written by :mod:`divqat.quant`): the float model's arch and meta;
``divqat_serving`` (written by :func:`divqat.serving.export.export_defended`): the defense's
name and what the answers are.
"""
import json

__all__ = ["SERVING_KEY", "VICTIM_KEY", "metadata", "serving_info"]

SERVING_KEY = "divqat_serving"
VICTIM_KEY = "divqat"


def metadata(model):
    """A ModelProto's metadata_props as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def serving_info(model):
    """What a served model publishes, from its metadata: arch, meta (num_classes, in_channels,
    image_size, mean, std), input_shape (C, H, W), defense name and what the answers are.
    ValueError for a file not written by :func:`export_defended`."""
    props = metadata(model)
    if SERVING_KEY not in props or VICTIM_KEY not in props:
        raise ValueError("--victim: this ONNX file was not written by `divqat export` (no divqat_serving metadata)")
    victim, serving = json.loads(props[VICTIM_KEY]), json.loads(props[SERVING_KEY])
    meta = victim["meta"]
    size = meta["image_size"]
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return {"arch": victim.get("arch"), "meta": meta, "input_shape": [int(meta["in_channels"]), h, w],
            "num_classes": int(meta["num_classes"]), **serving}
