"""prepare_qat: structure of the rewritten graph, equivalence with the float model when fake
quantization is off (the folding is exact), gradients, BN freezing, and bad inputs."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divqat.models import build_model
from divqat.models.layers import Normalize
from divqat.quant import (
    FakeQuantize,
    QATAdd,
    QATAvgPool2d,
    QATConv2d,
    QATLinear,
    disable_fake_quant,
    freeze_bn,
    get_qconfig,
    prepare_qat,
)


def _randomize_bn(model):
    """Non-trivial BN statistics and affine parameters, so folding is actually exercised."""
    g = torch.Generator().manual_seed(5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.2)
    return model


def _lenet():
    return build_model("lenet5", 10, 1, 28, [0.13], [0.31])


def _resnet8():
    return build_model("resnet8", 10, 3, 16, [0.5, 0.4, 0.3], [0.25, 0.2, 0.3])


class Functional(nn.Module):
    """Functional add/relu/flatten, a standalone BatchNorm + ReLU, AvgPool2d, MaxPool2d with
    padding, a standalone ReLU after pooling, Dropout, and a conv with bias and no BN."""

    def __init__(self):
        super().__init__()
        self.normalize = Normalize([0.5], [0.5])
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AvgPool2d(2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(4 * 2 * 2, 5)

    def forward(self, x):
        a = self.conv1(self.normalize(x))
        b = torch.relu(self.bn(self.conv2(F.relu(a)) + a))
        c = F.relu(self.maxpool(self.pool(b)))
        return self.fc(self.drop(torch.flatten(c, 1)))


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def test_lenet_structure():
    model = _lenet()
    p = prepare_qat(model)
    assert p.training and p.arch == "lenet5" and p.meta == model.meta
    convs = [m for m in p.modules() if isinstance(m, QATConv2d)]
    linears = [m for m in p.modules() if isinstance(m, QATLinear)]
    assert len(convs) == 2 and all(c.bn is not None and c.relu for c in convs)
    assert [lin.relu for lin in linears] == [True, True, False]  # logits are not ReLU'd
    # BN only lives inside the folded modules; no float Conv2d/Linear/ReLU left in the graph
    assert _count(p, nn.BatchNorm2d) == 2 and _count(p, nn.Conv2d) == 0 and _count(p, nn.Linear) == 0
    nodes = list(p.graph.nodes)
    targets = [n.target for n in nodes if n.op == "call_module"]
    assert targets[:2] == ["normalize", "normalize_fake_quant"]  # input quantized after Normalize
    assert isinstance(p.get_submodule("normalize_fake_quant"), FakeQuantize)
    assert _count(p, FakeQuantize) == 1 + 2 * (2 + 3)  # input + (weight, output) per conv/linear
    out = nodes[-1].args[0]
    assert isinstance(p.get_submodule(out.target), QATLinear)  # the logits are fake-quantized
    # the original model is untouched and shares no parameters with the copy
    assert all(p_.data_ptr() != q_.data_ptr() for p_ in model.parameters() for q_ in p.parameters())
    assert not hasattr(model, "graph")


def test_resnet_structure():
    p = prepare_qat(_resnet8(), get_qconfig(weight_bits=4, act_bits=6))
    adds = [m for m in p.modules() if isinstance(m, QATAdd)]
    assert len(adds) == 3 and all(a.relu for a in adds)
    assert _count(p, QATAvgPool2d) == 1
    assert _count(p, nn.ReLU) == 0 and _count(p, nn.BatchNorm2d) == _count(p, QATConv2d)
    standalone = [n for n in p.graph.nodes
                  if n.op == "call_module" and isinstance(p.get_submodule(n.target), FakeQuantize)]
    assert len(standalone) == 1  # every other value is quantized by the module that produced it
    fq = p.get_submodule("features.1.conv1.0").weight_fake_quant
    assert (fq.quant_min, fq.quant_max) == (-8, 7)
    assert (adds[0].output_fake_quant.quant_min, adds[0].output_fake_quant.quant_max) == (0, 63)


@pytest.mark.parametrize("build", [_lenet, _resnet8, Functional])
def test_without_fake_quant_equals_float_model(build):
    torch.manual_seed(0)
    model = _randomize_bn(build())
    size = 28 if build is _lenet else 16 if build is _resnet8 else 8
    ch = 3 if build is _resnet8 else 1
    x = torch.rand(6, ch, size, size)
    p = disable_fake_quant(prepare_qat(model))
    # eval: conv(x, W * f) + b_fold == BN(conv(x, W)) with running statistics
    model.eval()
    p.eval()
    with torch.no_grad():
        torch.testing.assert_close(p(x), model(x), rtol=1e-4, atol=1e-5)
    # train: batch statistics used, running statistics updated the same way
    model.train()
    p.train()
    with torch.no_grad():
        y_p = torch.manual_seed(1) and p(x)  # same dropout mask for both
        y_m = torch.manual_seed(1) and model(x)
        torch.testing.assert_close(y_p, y_m, rtol=1e-4, atol=1e-4)
    folded = {name: m.bn for name, m in p.named_modules() if isinstance(m, QATConv2d) and m.bn is not None}
    assert len(folded) == _count(model, nn.BatchNorm2d)
    for name, b in folded.items():
        # conv_bn Sequentials fold "<seq>.1" into "<seq>.0"; a standalone BN keeps its name
        a = model.get_submodule(name[:-1] + "1" if name.endswith(".0") else name)
        torch.testing.assert_close(b.running_mean, a.running_mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b.running_var, a.running_var, rtol=1e-4, atol=1e-5)


def test_gradients_flow_and_freeze_bn():
    torch.manual_seed(0)
    p = prepare_qat(_resnet8())
    x = torch.rand(4, 3, 16, 16)
    F.cross_entropy(p(x), torch.tensor([0, 1, 2, 3])).backward()
    for name, param in p.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    conv = p.get_submodule("features.0.0")
    freeze_bn(p)
    p.train()
    assert not conv.bn.training
    before = conv.bn.running_mean.clone()
    with torch.no_grad():
        p(x)
    assert torch.equal(conv.bn.running_mean, before)
    reloaded = prepare_qat(_resnet8())
    reloaded.load_state_dict(p.state_dict())  # the frozen phase travels with the checkpoint
    assert not reloaded.train().get_submodule("features.0.0").bn.training


def test_train_mode_observes_and_eval_does_not():
    p = prepare_qat(_lenet())
    fq = p.get_submodule("normalize_fake_quant")
    p.eval()
    with torch.no_grad():
        p(torch.rand(2, 1, 28, 28))
    assert not bool(fq.observer.has_observed())
    p.train()
    with torch.no_grad():
        p(torch.rand(2, 1, 28, 28))
    assert bool(fq.observer.has_observed())


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow
            return self.conv(x)
        return x


class WithSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(self.conv(x))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="traced"):
        prepare_qat(Untraceable())
    with pytest.raises(ValueError, match="unsupported operation"):
        prepare_qat(WithSigmoid())
    with pytest.raises(ValueError, match="model must be an nn.Module"):
        prepare_qat(lambda x: x)
    with pytest.raises(ValueError, match="qconfig"):
        prepare_qat(_lenet(), qconfig={"bits": 8})
    with pytest.raises(ValueError, match="already prepared"):
        prepare_qat(prepare_qat(_lenet()))
    with pytest.raises(ValueError, match="AdaptiveAvgPool2d"):
        prepare_qat(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(2)))
