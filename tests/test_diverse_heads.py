"""Diverse heads in one graph: the hashed head choice (divqat.models.multihead) against a
float64 reference, EDM's coherence loss (divqat.train.diverse_heads) against float64 and
gradcheck, and the selection inside the int8 ONNX graph against the PyTorch module, head
index for head index, including confidences at the bucket boundaries."""
import copy
import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from divqat import quant
from divqat.models import build_model
from divqat.models.multihead import HeadSelect, capture_heads, with_heads
from divqat.quant.onnx_export import OPSET
from divqat.quant.onnx_heads import HEAD_INDEX_HINT, select_head
from divqat.train.diverse_heads import coherence, diverse_loss

pytestmark = pytest.mark.usefixtures("one_thread")
K, C = 4, 10
META = {"num_classes": C, "in_channels": 1, "image_size": 28, "mean": (0.1307,), "std": (0.3081,)}


def _ref_head_index(first):
    """h in float64 from the formula, independent of the module."""
    p = np.exp(first - first.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    bucket = np.maximum(np.floor((10 * p.max(-1) - 1) * 2 / 9), 0)
    return (2 * first.argmax(-1) + bucket.astype(np.int64)) % K


def test_head_index_and_output_match_the_float64_formula():
    torch.manual_seed(0)
    x = torch.randn(500, K * C) * torch.tensor([0.5, 2.0, 6.0]).repeat_interleave(500 // 3 + 1)[:500, None]
    select = HeadSelect(K, C)
    index = select.head_index(x[:, :C])
    first64 = x[:, :C].double().numpy()
    p = np.exp(first64 - first64.max(-1, keepdims=True))
    level = (10 * (p / p.sum(-1, keepdims=True)).max(-1) - 1) * 2 / 9
    clear = np.abs(level - np.round(level)) > 1e-5  # rounding cannot move these across a bucket edge
    assert clear.mean() > 0.95 and len(set(index.tolist())) == K
    assert np.array_equal(index.numpy()[clear], _ref_head_index(first64)[clear])
    out = select(x)
    rows = torch.arange(500)
    assert torch.equal(out, x.reshape(500, K, C)[rows, index])


def test_buckets_at_their_edges():
    select = HeadSelect(K, C)
    # two live classes: max p = 1 / (1 + exp(-d)); p = 0.55 is the edge between buckets 0 and 1
    d = torch.tensor([np.log(0.55 / 0.45) - 1e-3, np.log(0.55 / 0.45) + 1e-3, 30.0], dtype=torch.float32)
    first = torch.full((3, C), -1e4)
    first[:, 3], first[:, 5] = d, 0.0
    # class 3: 2 * 3 = 6; buckets 0, 1 and (p == 1 exactly) 2
    assert select.head_index(first).tolist() == [6 % K, 7 % K, 8 % K]


def test_with_heads_keeps_head_zero_and_rebuilds_from_meta():
    teacher = build_model("smallcnn", **META).eval()
    model = with_heads(teacher, K).eval()
    assert model.meta["heads"] == K and "heads" not in teacher.meta
    x = torch.rand(6, 1, 28, 28)
    with capture_heads(model) as captured:
        out = model(x)
    heads = captured[0]
    assert heads.shape == (6, K, C)
    torch.testing.assert_close(heads[:, 0], teacher(x))
    assert torch.equal(out, heads[torch.arange(6), HeadSelect(K, C).head_index(heads[:, 0])])
    rebuilt = build_model("smallcnn", **model.meta)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.eval()(x), out)
    with pytest.raises(ValueError, match="heads"):
        with_heads(teacher, 2)
    with pytest.raises(ValueError, match="heads"):
        with_heads(model, 3)


def _ref_coherence(logits):
    p = torch.softmax(logits.double(), -1)
    rows = []
    for row in p:
        rows.append(max(float(row[a] @ row[b] / (row[a].norm() * row[b].norm()))
                        for a, b in itertools.combinations(range(len(row)), 2)))
    return torch.tensor(rows, dtype=torch.float64)


def test_coherence_is_the_largest_pairwise_cosine_and_has_the_right_gradient():
    logits = torch.randn(8, K, C, dtype=torch.float64) * 3
    torch.testing.assert_close(coherence(logits), _ref_coherence(logits))
    assert torch.allclose(coherence(logits[:, [0, 0, 0]]), torch.ones(8, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda s: coherence(s).mean(), logits.clone().requires_grad_(True))


@pytest.mark.parametrize("distill", [0.0, 1.5])
def test_diverse_loss_value_and_gradient_match_float64(distill):
    g = torch.Generator().manual_seed(1)
    heads = torch.randn(6, K, C, generator=g, dtype=torch.float64) * 2
    outlier_heads = torch.randn(5, K, C, generator=g, dtype=torch.float64) * 2
    teacher = torch.randn(6, C, generator=g, dtype=torch.float64) * 2
    y = torch.randint(C, (6,), generator=g)
    alpha, temperature = 0.7, 2.0

    def reference(h, o):
        lq = F.log_softmax(h, -1)
        ce = -lq.gather(-1, y[:, None, None].expand(-1, K, 1)).mean()
        lp, lqt = F.log_softmax(teacher / temperature, -1)[:, None], F.log_softmax(h / temperature, -1)
        kl = temperature**2 * (lp.exp() * (lp - lqt)).sum(-1).mean()
        return ce + distill * kl + alpha * _ref_coherence(o).mean() + 0 * o.sum()

    h, o = heads.clone().requires_grad_(True), outlier_heads.clone().requires_grad_(True)
    value = diverse_loss(h, teacher, y, o, alpha, temperature, "forward", distill)
    torch.testing.assert_close(value, reference(heads, outlier_heads))
    gh, go = torch.autograd.grad(value, (h, o))
    ref_h = heads.clone().requires_grad_(True)
    torch.testing.assert_close(gh, torch.autograd.grad(reference(ref_h, outlier_heads), ref_h)[0])
    assert torch.autograd.gradcheck(lambda s: diverse_loss(heads, teacher, y, s, alpha, temperature, "forward",
                                                           distill), o)
    assert go.abs().sum() > 0


def _selection_graph(scale, zero_point):
    """The exporter's selection alone: uint8 codes (N, K C) in, head index and codes out."""
    from divqat.quant.onnx_export import _GraphBuilder

    b = _GraphBuilder()
    out = select_head(b, "codes", (scale, zero_point), K, C)
    index = next(n.output[0] for n in b.nodes if n.output[0].startswith(HEAD_INDEX_HINT + "_"))
    graph = helper.make_graph(b.nodes, "select", [helper.make_tensor_value_info("codes", TensorProto.UINT8,
                                                                                ["n", K * C])],
                              [helper.make_tensor_value_info(out, TensorProto.UINT8, ["n", C]),
                               helper.make_tensor_value_info(index, TensorProto.INT64, ["n"])],
                              initializer=b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _boundary_codes(scale, zero_point, rng):
    """Codes whose head-0 confidence is within 2e-4 of a bucket edge (0.55 and 1.0), plus ties."""
    found = []
    while len(found) < 200:
        codes = rng.randint(0, 256, (4096, K * C)).astype(np.uint8)
        spread = rng.randint(1, 40, (4096, 1))
        codes[:, :C] = np.clip(codes[:, :C] // spread + 128, 0, 255)
        first = (codes[:, :C].astype(np.float32) - zero_point) * np.float32(scale)
        p = np.exp(first - first.max(-1, keepdims=True))
        p_max = 1 / p.sum(-1)
        found.extend(codes[np.abs(p_max - 0.55) < 2e-4])
    ties = np.zeros((20, K * C), np.uint8)
    ties[:, :C] = 100
    ties[:, 2:4] = 200  # head 0 ties between classes 2 and 3: the first wins
    sure = np.zeros((20, K * C), np.uint8)
    sure[:, 7] = 255  # the most confident answer codes allow
    return np.concatenate([np.stack(found), ties, sure])


@pytest.mark.parametrize("scale,zero_point", [(0.05, 7), (0.21, 130)])
def test_onnx_selection_equals_the_module_bit_for_bit(scale, zero_point):
    rng = np.random.RandomState(0)
    codes = np.concatenate([rng.randint(0, 256, (2000, K * C)).astype(np.uint8),
                            _boundary_codes(scale, zero_point, rng)])
    selected, index = _selection_graph(scale, zero_point).run(None, {"codes": codes})
    logits = (torch.from_numpy(codes.astype(np.float32)) - zero_point) * torch.tensor(scale, dtype=torch.float32)
    module = HeadSelect(K, C)
    expected = module.head_index(logits[:, :C])
    assert np.array_equal(index, expected.numpy())
    sure_bucket = 2 if scale * 255 > 20 else 1  # p == 1 in float32 once exp(-s * 255) * 9 < 2^-24
    assert set(index[-20:].tolist()) == {(2 * 7 + sure_bucket) % K}
    assert set(index[-40:-20].tolist()) == {(2 * 2 + 0) % K}  # a tie: class 2, and max p <= 0.5
    dequantized = (torch.from_numpy(selected.astype(np.float32)) - zero_point) * torch.tensor(scale)
    assert torch.equal(dequantized, module(logits))


def _images(n):
    """Random images of random contrast, so the answers vary."""
    return (torch.rand(n, 1, 28, 28) * torch.rand(n, 1, 1, 1) * 2).clamp(0, 1)


@pytest.fixture(scope="module")
def quantized_pair():
    torch.manual_seed(0)
    student = quant.prepare_qat(with_heads(build_model("smallcnn", **META), K))
    with torch.no_grad():
        dict(student.named_modules())["head.1"].weight.normal_(0, 0.3)  # the wide Linear: heads far apart
        student.train()
        for _ in range(3):
            student(_images(64))
    student = quant.freeze_observers(student).eval()
    return student, quant.convert(student, torch.rand(1, 1, 28, 28))


def test_int8_graph_selects_the_heads_the_module_selects(quantized_pair):
    student, int8 = quantized_pair
    proto = onnx.load_from_string(int8.onnx_bytes)
    op_types = {n.op_type for n in proto.graph.node}
    assert {"ArgMax", "Softmax", "ReduceMax", "Floor", "Mod", "GatherElements"} <= op_types
    assert len(proto.graph.output) == 1  # served unchanged: one logits output
    stacked = next(n.output[0] for n in proto.graph.node if n.op_type == "Reshape" and n.output[0].startswith("heads"))
    index = next(n.output[0] for n in proto.graph.node if n.output[0].startswith(HEAD_INDEX_HINT + "_"))
    probe = copy.deepcopy(proto)
    probe.graph.output.extend([helper.make_tensor_value_info(stacked, TensorProto.UINT8, None),
                               helper.make_tensor_value_info(index, TensorProto.INT64, None)])
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = _images(300)
    logits, codes, heads_chosen = session.run(None, {"input": x.numpy()})
    qat_module = next(m for m in student.modules() if isinstance(m, HeadSelect))
    fq = dict(student.named_modules())["head.1"].output_fake_quant
    scale, zero_point = (float(v.reshape(())) for v in fq.integer_qparams())
    all_heads = (torch.from_numpy(codes.astype(np.float32)) - zero_point) * torch.tensor(scale)
    assert np.array_equal(heads_chosen, qat_module.head_index(all_heads[:, 0]).numpy())
    assert len(set(heads_chosen.tolist())) > 1
    assert torch.equal(torch.from_numpy(logits), all_heads[torch.arange(300), torch.from_numpy(heads_chosen)])
    with torch.no_grad():  # and the integer model answers as the fake-quantized one it came from
        fake = student(x)
    assert (fake.argmax(-1) == torch.from_numpy(logits).argmax(-1)).float().mean() >= 0.99
    torch.testing.assert_close(torch.from_numpy(logits), fake, rtol=0, atol=2 * scale)
