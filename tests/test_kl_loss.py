"""div_kl_loss and divqat_loss on every backend against a float64 oracle.

The oracle is divqat.reference.kl_loss on float64 inputs (log_softmax, cross_entropy and
autograd of PyTorch); the fused kernels (C++ "compiled", Triton under TRITON_INTERPRET=1)
compute the same losses and write their gradients in the forward pass.
"""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from op_backends import BACKENDS, backend, fused_ops, use_backend  # noqa: F401  (fixtures)

from divqat.ops import div_kl_loss, divqat_loss
from divqat.ops import kl_loss as ops_module
from divqat.reference import kl_loss as ref

REDUCTIONS = ("batchmean", "sum", "none")
DIRECTIONS = ("forward", "reverse")


def _logits(shape, dtype=torch.float32, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def _value_and_grads(fn, student, teacher, upstream, **kwargs):
    """Loss and the gradients w.r.t. both logits for a given upstream gradient."""
    s = student.detach().clone().requires_grad_()
    t = teacher.detach().clone().requires_grad_()
    loss = fn(s, t, **kwargs)
    gs, gt = torch.autograd.grad(loss, (s, t), grad_outputs=upstream.to(loss.dtype).expand_as(loss))
    return loss.detach(), gs, gt


def _assert_close_to_oracle(fn, ref_fn, student, teacher, rtol=2e-5, atol=2e-6, **kwargs):
    upstream = _upstream(ref_fn, student, teacher, **kwargs)
    loss_ref, gs_ref, gt_ref = _value_and_grads(ref_fn, student.double(), teacher.double(), upstream, **kwargs)
    loss, gs, gt = _value_and_grads(fn, student, teacher, upstream, **kwargs)
    assert loss.dtype == student.dtype and gs.dtype == student.dtype
    scale = max(1.0, float(loss_ref.abs().max())) if loss_ref.numel() else 1.0
    torch.testing.assert_close(loss.double(), loss_ref, rtol=rtol, atol=atol * scale)
    torch.testing.assert_close(gs.double(), gs_ref, rtol=rtol, atol=atol)
    torch.testing.assert_close(gt.double(), gt_ref, rtol=rtol, atol=atol)


def _upstream(ref_fn, student, teacher, **kwargs):
    """A non-unit upstream gradient of the loss's shape (per row for reduction='none')."""
    with torch.no_grad():
        shape = ref_fn(student.double(), teacher.double(), **kwargs).shape
    if not shape:
        return torch.tensor(-0.75)
    return torch.linspace(-1.5, 2.0, shape.numel()).reshape(shape)


@pytest.mark.parametrize("cols", [1, 2, 4097])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("temperature", [0.5, 4.0])
def test_div_kl_loss_matches_float64_reference(backend, cols, direction, temperature):
    s, t = _logits((2, cols), seed=1), _logits((2, cols), seed=2)
    for reduction in REDUCTIONS:
        _assert_close_to_oracle(
            div_kl_loss, ref.div_kl_loss, s, t, temperature=temperature, reduction=reduction, direction=direction
        )


@pytest.mark.parametrize("cols", [1, 2, 4097])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("temperature", [0.5, 1.0])  # T = 1 shares the exponentials of CE and KL
def test_divqat_loss_matches_float64_reference(backend, cols, direction, temperature):
    s, t = _logits((2, cols), seed=3), _logits((2, cols), seed=4)
    target = torch.tensor([cols - 1, cols // 2])
    _assert_close_to_oracle(
        divqat_loss, ref.divqat_loss, s, t, target=target, alpha=0.7, temperature=temperature, direction=direction
    )


def test_kl_matches_pytorch_kl_div(backend):
    """Independent of the reference module: T^2 * F.kl_div on log_softmax, both directions."""
    s, t, temperature = _logits((5, 11), torch.float64), _logits((5, 11), torch.float64, seed=5), 2.0
    log_q, log_p = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
    forward = temperature**2 * F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    reverse = temperature**2 * F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
    torch.testing.assert_close(div_kl_loss(s, t, temperature), forward)
    torch.testing.assert_close(div_kl_loss(s, t, temperature, direction="reverse"), reverse)
    target = torch.arange(5)
    expected = F.cross_entropy(s, target) - 0.5 * forward
    torch.testing.assert_close(divqat_loss(s, t, target, 0.5, temperature), expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_leading_dimensions(backend, reduction):
    s, t = _logits((2, 3, 5), seed=6), _logits((2, 3, 5), seed=7)
    _assert_close_to_oracle(div_kl_loss, ref.div_kl_loss, s, t, temperature=1.5, reduction=reduction)
    loss = div_kl_loss(s, t, reduction=reduction)
    assert loss.shape == ((2, 3) if reduction == "none" else ())
    target = torch.tensor([[0, 4, 2], [1, 1, 3]])
    _assert_close_to_oracle(divqat_loss, ref.divqat_loss, s, t, target=target, alpha=0.3, temperature=2.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(backend, dtype):
    s, t = _logits((4, 33), dtype, seed=8), _logits((4, 33), dtype, seed=9)
    _assert_close_to_oracle(
        div_kl_loss, ref.div_kl_loss, s, t, rtol=2e-2, atol=2e-2, temperature=2.0, reduction="none"
    )
    target = torch.tensor([0, 5, 32, 7])
    _assert_close_to_oracle(divqat_loss, ref.divqat_loss, s, t, rtol=2e-2, atol=2e-2, target=target, alpha=1.0)


def test_mixed_dtypes_promote(backend):
    s, t = _logits((2, 6), torch.float16), _logits((2, 6), torch.float32, seed=1)
    loss = div_kl_loss(s, t)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref.div_kl_loss(s.float(), t), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_extreme_logits_are_finite(backend, direction):
    """Logits of +-1e4: log-space arithmetic keeps loss and gradient finite and exact."""
    s = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, 1e4, 3.0, 1e4], [1e4, 1e4, 1e4, 1e4]])
    t = torch.tensor([[-1e4, 1e4, 0.0, 1.0], [1e4, -1e4, 5.0, 1e4], [1e4, 1e4, 1e4, -1e4]])
    _assert_close_to_oracle(
        div_kl_loss, ref.div_kl_loss, s, t, rtol=1e-5, atol=1e-5, reduction="none", direction=direction
    )
    target = torch.tensor([0, 1, 2])
    _assert_close_to_oracle(
        divqat_loss, ref.divqat_loss, s, t, rtol=1e-5, atol=1e-5, target=target, alpha=0.1, direction=direction
    )


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_gradcheck_float64(backend, direction):
    s = _logits((3, 5), torch.float64).requires_grad_()
    t = _logits((3, 5), torch.float64, seed=1).requires_grad_()
    target = torch.tensor([4, 0, 2])
    assert torch.autograd.gradcheck(lambda a, b: div_kl_loss(a, b, 1.7, "none", direction), (s, t), fast_mode=True)
    assert torch.autograd.gradcheck(
        lambda a, b: divqat_loss(a, b, target, 0.6, 0.8, direction), (s, t), fast_mode=True
    )


def test_kl_cap_is_a_hinge_on_the_scaled_row_kl(backend):
    s, t = _logits((6, 7), seed=10), _logits((6, 7), seed=11)
    target, temperature, alpha = torch.tensor([0, 1, 2, 3, 4, 5]), 2.0, 0.8
    row_kl = ref.div_kl_loss(s.double(), t.double(), temperature, "none")
    cap = float(row_kl.sort().values[2:4].mean())  # halfway between two rows' KL
    capped = row_kl > cap
    assert 0 < int(capped.sum()) < 6
    _assert_close_to_oracle(
        divqat_loss, ref.divqat_loss, s, t, target=target, alpha=alpha, temperature=temperature, kl_cap=cap
    )
    # capped rows: the student's gradient is the cross-entropy's alone
    sg = s.double().requires_grad_()
    divqat_loss(sg.float(), t, target, alpha, temperature, kl_cap=cap).backward()
    sc = s.double().requires_grad_()
    (F.cross_entropy(sc, target, reduction="sum") / 6).backward()
    torch.testing.assert_close(sg.grad[capped], sc.grad[capped], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(sg.grad[~capped], sc.grad[~capped])
    expected = F.cross_entropy(s.double(), target) - alpha * row_kl.clamp(max=cap).mean()
    got = divqat_loss(s, t, target, alpha, temperature, kl_cap=cap).double()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_teacher_gradient_matches_autograd_of_pytorch(backend):
    """The teacher's gradient is computed (never a silent zero) in both directions."""
    s, t = _logits((4, 9), torch.float64, seed=12), _logits((4, 9), torch.float64, seed=13)
    for direction in DIRECTIONS:
        tg = t.clone().requires_grad_()
        div_kl_loss(s, tg, 3.0, "sum", direction).backward()
        tr = t.clone().requires_grad_()
        log_q, log_p = F.log_softmax(s / 3.0, -1), F.log_softmax(tr / 3.0, -1)
        a, b = (log_p, log_q) if direction == "forward" else (log_q, log_p)
        (9.0 * (a.exp() * (a - b)).sum()).backward()
        torch.testing.assert_close(tg.grad, tr.grad)
        assert tg.grad.abs().max() > 1e-3


def test_no_grad_and_frozen_teacher(backend):
    s, t = _logits((3, 8)), _logits((3, 8), seed=1)
    with torch.no_grad():
        frozen = div_kl_loss(s.requires_grad_(), t)
    assert not frozen.requires_grad
    torch.testing.assert_close(frozen, ref.div_kl_loss(s.detach(), t))
    loss = divqat_loss(s, t, torch.tensor([1, 2, 3]), 0.5)
    (grad_s,) = torch.autograd.grad(loss, s)
    assert grad_s.shape == s.shape


def test_empty_batch(backend):
    s, t = torch.empty(0, 4), torch.empty(0, 4)
    assert torch.isnan(div_kl_loss(s, t))
    assert float(div_kl_loss(s, t, reduction="sum")) == 0.0
    assert div_kl_loss(s, t, reduction="none").shape == (0,)
    assert torch.isnan(divqat_loss(s, t, torch.empty(0, dtype=torch.long), 0.5))


def test_fused_backend_serves_the_call(fused_ops, monkeypatch):
    """The fused kernels, not the reference, answer when a fused backend is selected, forward
    and ordinary backward: the reference recomputes the gradients under create_graph=True only."""

    def fail(*args, **kwargs):
        raise AssertionError("reference called")

    monkeypatch.setattr(ops_module.reference, "div_kl_loss", fail)
    monkeypatch.setattr(ops_module.reference, "divqat_loss", fail)
    s, t = _logits((2, 3)).requires_grad_(), _logits((2, 3), seed=1).requires_grad_()
    div_kl_loss(s, t).backward()
    divqat_loss(s, t, torch.tensor([0, 2]), 1.0).backward()
    assert s.grad is not None and t.grad is not None
    with pytest.raises(AssertionError, match="reference called"):
        torch.autograd.grad(div_kl_loss(s, t), s, create_graph=True)


def test_compiled_kernel_is_deterministic_across_thread_counts(monkeypatch):
    use_backend(monkeypatch, "compiled")
    s, t = _logits((257, 301)), _logits((257, 301), seed=1)
    target = torch.arange(257) % 301
    threads = torch.get_num_threads()
    results = []
    for n in (1, 2):
        torch.set_num_threads(n)
        s_ = s.clone().requires_grad_()
        loss = divqat_loss(s_, t, target, 0.5, 2.0)
        loss.backward()
        results.append((loss.detach(), s_.grad))
    torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_opcheck(fused_ops, direction):
    s = _logits((3, 5)).requires_grad_()
    t = _logits((3, 5), seed=1).requires_grad_()
    s0, t0 = s.detach(), t.detach()  # no gradient wanted: none written
    target = torch.tensor([0, 4, 2])
    torch.library.opcheck(fused_ops.div_kl_loss.default, (s, t, 2.0, "none", direction, True, True))
    torch.library.opcheck(fused_ops.div_kl_loss.default, (s0, t0, 1.0, "batchmean", direction, False, False))
    torch.library.opcheck(fused_ops.divqat_loss.default, (s, t0, target, 0.5, 2.0, direction, 0.1, True, False))


def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()
    target = torch.tensor([1, 0, 3])

    def objective(s, t):
        return div_kl_loss(s, t, 2.0, "none", "reverse").sum() + divqat_loss(s, t, target, 0.5, 2.0, kl_cap=0.5)

    s = _logits((3, 6)).requires_grad_()
    t = _logits((3, 6), seed=1)
    compiled = torch.compile(objective, fullgraph=True)
    loss = compiled(s, t)
    loss.backward()
    s_ref = s.detach().double().requires_grad_()
    expected = ref.div_kl_loss(s_ref, t.double(), 2.0, "none", "reverse").sum() + ref.divqat_loss(
        s_ref, t.double(), target, 0.5, 2.0, kl_cap=0.5
    )
    expected.backward()
    torch.testing.assert_close(loss.double(), expected.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.grad.double(), s_ref.grad, rtol=1e-5, atol=1e-6)


@settings(deadline=None, max_examples=12)
@given(
    rows=st.integers(0, 4),
    cols=st.integers(1, 40),
    lead=st.sampled_from([(), (2,)]),
    transpose=st.booleans(),
    reduction=st.sampled_from(REDUCTIONS),
    direction=st.sampled_from(DIRECTIONS),
    temperature=st.floats(0.25, 5.0),
)
def test_property_shapes_and_views(rows, cols, lead, transpose, reduction, direction, temperature):
    """Odd shapes, one column, empty batches and non-contiguous views, on every backend."""
    shape = (*lead, rows, cols)
    s, t = _logits(shape, seed=rows), _logits(shape, seed=cols)
    if transpose:  # a non-contiguous view with the same logical values
        s = s.transpose(-1, -2).contiguous().transpose(-1, -2)
        t = t.transpose(-1, -2).contiguous().transpose(-1, -2)
    target = (torch.arange(s[..., 0].numel()) % cols).reshape(s.shape[:-1])
    expected = ref.div_kl_loss(s.double(), t.double(), temperature, reduction, direction)
    expected_q = ref.divqat_loss(s.double(), t.double(), target, 0.4, temperature, direction)
    with pytest.MonkeyPatch.context() as mp:
        for name in BACKENDS:
            use_backend(mp, name)
            got = div_kl_loss(s, t, temperature, reduction, direction)
            torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5, equal_nan=True)
            got_q = divqat_loss(s, t, target, 0.4, temperature, direction)
            torch.testing.assert_close(got_q.double(), expected_q, rtol=1e-5, atol=1e-5, equal_nan=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["compiled", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("cols", [1, 7, 1000, 4096, 32000, 40000])
def test_cuda_matches_float64_reference(monkeypatch, name, dtype, cols):
    """The CUDA and Triton GPU kernels: unaligned and vectorized rows, several block sizes."""
    use_backend(monkeypatch, name)
    tol = {"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {"rtol": 1e-4, "atol": 1e-5}
    s, t = _logits((5, cols), dtype, seed=cols), _logits((5, cols), dtype, seed=cols + 1)
    target = torch.tensor([0, cols - 1, cols // 2, cols // 3, 1 % cols])
    for direction in DIRECTIONS:
        for temperature in (1.0, 2.5):
            s_gpu = s.cuda().requires_grad_()
            t_gpu = t.cuda().requires_grad_()
            for got_fn, ref_fn, kwargs in (
                (div_kl_loss, ref.div_kl_loss, {"reduction": "none"}),
                (divqat_loss, ref.divqat_loss, {"target": target, "alpha": 0.4, "kl_cap": 3.0}),
            ):
                kwargs = {**kwargs, "temperature": temperature, "direction": direction}
                got = got_fn(s_gpu, t_gpu, **{k: v.cuda() if k == "target" else v for k, v in kwargs.items()})
                upstream = torch.linspace(-1.0, 2.0, got.numel(), device="cuda").reshape(got.shape)
                grads = torch.autograd.grad(got, (s_gpu, t_gpu), upstream.to(got.dtype))
                expected, *e_grads = _value_and_grads(ref_fn, s.double(), t.double(), upstream.cpu(), **kwargs)
                torch.testing.assert_close(got.double().cpu(), expected, **tol)
                for g, e in zip(grads, e_grads):
                    torch.testing.assert_close(g.double().cpu(), e, **tol)


def _bad_div_kl_cases():
    s, t = _logits((2, 3)), _logits((2, 3), seed=1)
    return [
        ((s, _logits((2, 4))), {}, "teacher_logits"),
        ((s.long(), t), {}, "student_logits"),
        ((s, t.int()), {}, "teacher_logits"),
        ((torch.tensor(1.0), torch.tensor(1.0)), {}, "student_logits"),
        ((torch.empty(2, 0), torch.empty(2, 0)), {}, "student_logits"),
        ((s, t), {"temperature": 0.0}, "temperature"),
        ((s, t), {"temperature": -1.0}, "temperature"),
        ((s, t), {"temperature": float("nan")}, "temperature"),
        ((s, t), {"reduction": "mean"}, "reduction"),
        ((s, t), {"direction": "backward"}, "direction"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_div_kl_cases())))
def test_div_kl_loss_bad_input(backend, case):
    args, kwargs, name = _bad_div_kl_cases()[case]
    with pytest.raises(ValueError, match=name):
        div_kl_loss(*args, **kwargs)


def test_raw_ops_check_their_arguments(fused_ops):
    """Called directly (bypassing divqat.ops), the fused ops still refuse bad input by name."""
    s, t = _logits((2, 3)), _logits((2, 3), seed=1)
    with pytest.raises((ValueError, RuntimeError), match="teacher_logits"):
        fused_ops.div_kl_loss(s, _logits((2, 4)), 1.0, "sum", "forward", False, False)
    with pytest.raises((ValueError, RuntimeError), match="reduction"):
        fused_ops.div_kl_loss(s, t, 1.0, "mean", "forward", False, False)
    with pytest.raises((ValueError, RuntimeError), match="direction"):
        fused_ops.div_kl_loss(s, t, 1.0, "sum", "sideways", False, False)
    with pytest.raises((ValueError, RuntimeError), match="temperature"):
        fused_ops.div_kl_loss(s, t, -1.0, "sum", "forward", False, False)
    with pytest.raises((ValueError, RuntimeError), match="target"):
        fused_ops.divqat_loss(s, t, torch.tensor([0, 3]), 0.5, 1.0, "forward", None, False, False)
    with pytest.raises((ValueError, RuntimeError), match="target"):
        fused_ops.divqat_loss(s, t, torch.tensor([0]), 0.5, 1.0, "forward", None, False, False)
    with pytest.raises((ValueError, RuntimeError), match="kl_cap"):
        fused_ops.divqat_loss(s, t, torch.tensor([0, 1]), 0.5, 1.0, "forward", -1.0, False, False)


def _bad_divqat_cases():
    s, t, y = _logits((2, 3)), _logits((2, 3), seed=1), torch.tensor([0, 2])
    base = {"student_logits": s, "teacher_logits": t, "target": y, "alpha": 0.5}
    return [
        ({"teacher_logits": _logits((3, 3))}, "teacher_logits"),
        ({"student_logits": s.to(torch.int64)}, "student_logits"),
        ({"target": torch.tensor([0, 3])}, "target"),
        ({"target": torch.tensor([-1, 0])}, "target"),
        ({"target": y.float()}, "target"),
        ({"target": y.int()}, "target"),
        ({"target": torch.tensor([0, 1, 2])}, "target"),
        ({"alpha": -0.1}, "alpha"),
        ({"temperature": 0.0}, "temperature"),
        ({"direction": "both"}, "direction"),
        ({"kl_cap": 0.0}, "kl_cap"),
        ({"kl_cap": -2.0}, "kl_cap"),
    ], base


@pytest.mark.parametrize("case", range(len(_bad_divqat_cases()[0])))
def test_divqat_loss_bad_input(backend, case):
    cases, base = _bad_divqat_cases()
    change, name = cases[case]
    with pytest.raises((ValueError, RuntimeError), match=name):
        divqat_loss(**{**base, **change})


# ---- second derivatives (create_graph=True) ----------------------------------------------------

def _penalty_hessian_row(loss_fn, s, t):
    """d/ds of |dL/ds|^2 for L = loss_fn(s, t) + 0.5 |s|^2 (a gradient penalty)."""
    s = s.detach().clone().requires_grad_()
    loss = loss_fn(s, t) + 0.5 * (s**2).sum()
    (grad,) = torch.autograd.grad(loss, s, create_graph=True)
    (second,) = torch.autograd.grad((grad**2).sum(), s)
    return second


def test_double_backward_matches_reference_issue_repro(backend):
    """The repro of the report: the fused kernels' saved gradients used to be constants, so the
    second derivative was wrong without a word (-2.2973 instead of -2.3356)."""
    torch.manual_seed(0)
    s, t = torch.randn(4, 6), torch.randn(4, 6)
    y = torch.tensor([0, 5, 2, 3])
    for fn, ref_fn in (
        (div_kl_loss, ref.div_kl_loss),
        (lambda a, b: divqat_loss(a, b, y, 0.7, 2.0, kl_cap=5.0), lambda a, b: ref.divqat_loss(a, b, y, 0.7, 2.0, kl_cap=5.0)),
    ):
        got = _penalty_hessian_row(fn, s, t)
        want = _penalty_hessian_row(ref_fn, s.double(), t.double())
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    assert _penalty_hessian_row(div_kl_loss, s, t)[0, 0].item() == pytest.approx(-2.3356, abs=1e-4)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_gradgradcheck_float64(backend, direction):
    s = _logits((3, 5), torch.float64).requires_grad_()
    t = _logits((3, 5), torch.float64, seed=1).requires_grad_()
    y = torch.tensor([0, 4, 2])
    assert torch.autograd.gradgradcheck(lambda a, b: div_kl_loss(a, b, 2.0, "none", direction), (s, t))
    assert torch.autograd.gradgradcheck(lambda a, b: divqat_loss(a, b, y, 0.5, 1.5, direction), (s, t))


# ---- zero probabilities: 0 log 0 = 0 ------------------------------------------------------------

def test_zero_teacher_probability_is_finite_like_kl_div(backend):
    """A teacher logit of -inf (probability 0) contributes 0, as F.kl_div with probabilities
    computes it (xlogy); the loss and its gradients were NaN in every backend."""
    s, t = _logits((4, 6)), _logits((4, 6), seed=1)
    t[0, 1] = t[2, 5] = -float("inf")
    s_ = s.clone().requires_grad_()
    loss = div_kl_loss(s_, t, 2.0)
    loss.backward()
    s64 = s.double().requires_grad_()
    want = 4.0 * F.kl_div(F.log_softmax(s64 / 2.0, -1), F.softmax(t.double() / 2.0, -1), reduction="batchmean")
    want.backward()
    torch.testing.assert_close(loss.double(), want.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s_.grad.double(), s64.grad, rtol=1e-5, atol=1e-6)
    y = torch.tensor([0, 1, 2, 3])
    assert torch.isfinite(divqat_loss(s, t, y, 0.5, 2.0))


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("masked", [-float("inf"), -1e9, torch.finfo(torch.float32).min])
def test_class_masked_in_both_logits_contributes_nothing(backend, direction, masked):
    """A class masked in both teacher and student (a "non-label KL" masks the label so) adds 0
    to the loss and gets a zero gradient: the loss and the other gradients equal those of the
    logits without that class."""
    s, t = _logits((3, 7)), _logits((3, 7), seed=1)
    label = torch.tensor([2, 0, 6])
    rows = torch.arange(3)
    s[rows, label] = masked
    t[rows, label] = masked
    keep = torch.ones(3, 7, dtype=torch.bool)
    keep[rows, label] = False
    upstream = torch.tensor([0.5, -1.0, 2.0])
    loss, gs, gt = _value_and_grads(div_kl_loss, s, t, upstream, temperature=0.5, reduction="none", direction=direction)
    want, ws, wt = _value_and_grads(ref.div_kl_loss, s[keep].reshape(3, 6).double(), t[keep].reshape(3, 6).double(),
                                    upstream, temperature=0.5, reduction="none", direction=direction)
    torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=1e-6)
    assert torch.equal(gs[~keep], torch.zeros(3)) and torch.equal(gt[~keep], torch.zeros(3))
    torch.testing.assert_close(gs[keep].reshape(3, 6).double(), ws, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gt[keep].reshape(3, 6).double(), wt, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_masked_leading_block_is_skipped(backend, direction):
    """Rows whose first 4096 classes (a whole block of the online kernels) are -inf in both
    logits: the loss and gradients are those of the remaining classes (an online maximum of -inf
    must not make the block's sums NaN)."""
    s, t = _logits((2, 4100)), _logits((2, 4100), seed=1)
    s[:, :4096] = t[:, :4096] = -float("inf")
    y = torch.tensor([4097, 4099])
    loss, gs, gt = _value_and_grads(lambda a, b: divqat_loss(a, b, y, 0.5, 2.0, direction), s, t, torch.tensor(1.0))
    want, ws, wt = _value_and_grads(lambda a, b: ref.divqat_loss(a, b, y - 4096, 0.5, 2.0, direction),
                                    s[:, 4096:].double(), t[:, 4096:].double(), torch.tensor(1.0))
    torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=1e-6)
    assert torch.equal(gs[:, :4096], torch.zeros(2, 4096)) and torch.equal(gt[:, :4096], torch.zeros(2, 4096))
    torch.testing.assert_close(gs[:, 4096:].double(), ws, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gt[:, 4096:].double(), wt, rtol=1e-5, atol=1e-6)
