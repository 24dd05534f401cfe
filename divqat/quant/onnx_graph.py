"""A small ONNX graph builder: nodes and constant initializers under fresh, unique names.

Shared by the int8 exporter (divqat.quant.onnx_export) and the defense graph that serving
appends to it (divqat.serving.export); a ``prefix`` keeps the two graphs' names apart when
they are composed into one model.
"""
import numpy as np
from onnx import helper, numpy_helper

__all__ = ["GraphBuilder"]


class GraphBuilder:
    """Accumulates ``nodes`` and ``initializers``; every name is ``{prefix}{hint}_{n}``."""

    def __init__(self, prefix=""):
        self.prefix = prefix
        self.nodes, self.initializers, self._count = [], [], 0

    def fresh(self, hint):
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, hint, array):
        """An initializer holding ``array``; returns its name."""
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, hint, domain=None, outputs=1, **attrs):
        """Append one ``op`` node; returns its output name (a list when ``outputs > 1``)."""
        names = [self.fresh(hint) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, name=names[0], domain=domain, **attrs))
        return names[0] if outputs == 1 else names
