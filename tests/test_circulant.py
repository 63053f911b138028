"""Tests for gclf.circulant.layer: FFT forward vs materialised matrix, projection optimality, model surgery."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from gclf.circulant.layer import (BlockCirculantLinear, blocks_respect_gates, circulant_to_dense, compress_model,
                            convert_linear, project_to_circulant)

SHAPES = [(80, 64), (8, 64), (16, 64), (32, 2), (7, 5), (5, 13), (64, 32)]  # (in, out)
BLOCKS = [1, 2, 4, 8, 16]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand_vectors(out_f: int, in_f: int, k: int, dtype=torch.float64, seed: int = 1) -> torch.Tensor:
    return torch.randn(math.ceil(out_f / k), math.ceil(in_f / k), k, generator=_gen(seed), dtype=dtype)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("in_f,out_f", SHAPES)
def test_forward_matches_dense(in_f, out_f, block, dtype, tol):
    torch.manual_seed(0)
    layer = BlockCirculantLinear(in_f, out_f, block).to(dtype)
    assert layer.weight.shape == (math.ceil(out_f / block), math.ceil(in_f / block), block)
    x = torch.randn(3, 4, in_f, generator=_gen(), dtype=dtype)
    y = layer(x)
    assert y.shape == (3, 4, out_f) and y.dtype == dtype
    ref = x @ layer.dense_weight().T + layer.bias
    torch.testing.assert_close(y, ref, atol=tol, rtol=0)


def test_forward_leading_dims_and_no_bias():
    layer = BlockCirculantLinear(13, 5, 4, bias=False).double()
    assert layer.bias is None and layer.n_params() == 2 * 4 * 4
    for shape in [(13,), (2, 13), (2, 3, 1, 13)]:
        x = torch.randn(*shape, generator=_gen(), dtype=torch.float64)
        torch.testing.assert_close(layer(x), x @ layer.dense_weight().T, atol=1e-10, rtol=0)
    with pytest.raises(ValueError):
        layer(torch.randn(2, 12, dtype=torch.float64))


def test_dense_convention_first_column():
    c = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    d = circulant_to_dense(c, 4, 4)
    torch.testing.assert_close(d[:, 0], c[0, 0])          # c is the first column
    assert d[0, 1] == 4.0 and d[1, 0] == 2.0               # C[i, j] = c[(i - j) mod k]
    torch.testing.assert_close(circulant_to_dense(c, 3, 2), d[:3, :2])


@pytest.mark.parametrize("block", [2, 4, 8, 16])
@pytest.mark.parametrize("in_f,out_f", SHAPES)
def test_dense_blocks_are_circulant(in_f, out_f, block):
    m = circulant_to_dense(_rand_vectors(out_f, in_f, block), out_f, in_f)
    assert m.shape == (out_f, in_f)
    checked = 0
    for a in range(out_f // block):
        for b in range(in_f // block):
            blk = m[a * block:(a + 1) * block, b * block:(b + 1) * block]
            torch.testing.assert_close(blk, torch.roll(blk, shifts=(1, 1), dims=(0, 1)), atol=0, rtol=0)
            checked += 1
    assert checked == (out_f // block) * (in_f // block)


def test_dense_integer_vectors():
    c = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    d = circulant_to_dense(c, 7, 10)
    assert d.dtype == c.dtype and d.shape == (7, 10) and d[5, 9] == c[1, 2, (5 - 4 - 1) % 4]
    with pytest.raises(ValueError):
        circulant_to_dense(c, 9, 10)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("in_f,out_f", SHAPES)
def test_projection_idempotent(in_f, out_f, block):
    c = _rand_vectors(out_f, in_f, block)
    # Diagonals with no real entry (only possible when padded) are not determined by the matrix: zero them.
    p = project_to_circulant(circulant_to_dense(c, out_f, in_f), block)
    support = project_to_circulant(torch.ones(out_f, in_f, dtype=torch.float64), block) > 0
    torch.testing.assert_close(p, torch.where(support, c, torch.zeros_like(c)), atol=1e-12, rtol=0)
    torch.testing.assert_close(project_to_circulant(circulant_to_dense(p, out_f, in_f), block), p)


def test_projection_empty_diagonal_is_zero():
    w = torch.randn(2, 2, generator=_gen(), dtype=torch.float64)  # one 4x4 block, only (0..1, 0..1) real
    c = project_to_circulant(w, 4)[0, 0]
    assert c[2] == 0.0                                             # (i - j) % 4 == 2 has no real entry
    torch.testing.assert_close(c[0], (w[0, 0] + w[1, 1]) / 2)
    torch.testing.assert_close(c[1], w[1, 0])
    torch.testing.assert_close(c[3], w[0, 1])


@pytest.mark.parametrize("block", [2, 4, 8, 16])
@pytest.mark.parametrize("in_f,out_f", SHAPES)
def test_projection_is_nearest(in_f, out_f, block):
    w = torch.randn(out_f, in_f, generator=_gen(3), dtype=torch.float64)
    pw = circulant_to_dense(project_to_circulant(w, block), out_f, in_f)
    best = torch.linalg.norm(w - pw)
    for seed in range(5):
        other = circulant_to_dense(_rand_vectors(out_f, in_f, block, seed=10 + seed), out_f, in_f)
        assert best <= torch.linalg.norm(w - other) + 1e-12
        # a small perturbation of the optimum is never better either
        assert best <= torch.linalg.norm(w - (pw + 1e-3 * other)) + 1e-12
        # residual is orthogonal to the (cropped, i.e. real-entry) block-circulant subspace
        assert abs(float(((w - pw) * other).sum())) < 1e-10


@pytest.mark.parametrize("in_f,out_f", SHAPES)
def test_block_one_is_dense(in_f, out_f):
    lin = nn.Linear(in_f, out_f).double()
    layer = convert_linear(lin, 1)
    torch.testing.assert_close(layer.dense_weight(), lin.weight.detach(), atol=0, rtol=0)
    x = torch.randn(6, in_f, generator=_gen(), dtype=torch.float64)
    torch.testing.assert_close(layer(x), lin(x), atol=1e-12, rtol=0)
    assert layer.n_params() == sum(p.numel() for p in lin.parameters())


def test_gradients_flow():
    layer = BlockCirculantLinear(13, 7, 4)
    x = torch.randn(5, 13, generator=_gen(), requires_grad=True)
    layer(x).pow(2).sum().backward()
    for t in (layer.weight, layer.bias, x):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    # FFT path and materialised path give the same weight gradient
    g_fft = layer.weight.grad.clone()
    layer.zero_grad()
    (x.detach() @ layer.dense_weight().T + layer.bias).pow(2).sum().backward()
    torch.testing.assert_close(layer.weight.grad, g_fft, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("in_f,out_f,block,expected", [
    (80, 64, 8, 8 * 10 * 8 + 64), (64, 32, 8, 4 * 8 * 8 + 32), (32, 2, 8, 1 * 4 * 8 + 2),
    (8, 64, 4, 16 * 2 * 4 + 64), (16, 64, 16, 4 * 1 * 16 + 64), (7, 5, 4, 2 * 2 * 4 + 5),
])
def test_param_counts(in_f, out_f, block, expected):
    layer = BlockCirculantLinear(in_f, out_f, block)
    assert layer.n_params() == expected == sum(p.numel() for p in layer.parameters())
    assert f"block={block}" in repr(layer)


def test_bad_block():
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError):
            BlockCirculantLinear(8, 8, bad)
        with pytest.raises(ValueError):
            project_to_circulant(torch.zeros(4, 4), bad)


class _LSTMish(nn.Module):
    def __init__(self):
        super().__init__()
        self.ih, self.hh = nn.Linear(8, 64), nn.Linear(16, 64)


class _Tiny(nn.Module):
    """Same submodule names and shapes as the default CNN-LSTM's compressible layers."""

    def __init__(self):
        super().__init__()
        self.lstm = _LSTMish()
        self.fc1, self.fc2, self.fc3 = nn.Linear(80, 64), nn.Linear(64, 32), nn.Linear(32, 2)
        self.act = nn.ReLU()

    def forward(self, x8: torch.Tensor, h16: torch.Tensor, x80: torch.Tensor) -> torch.Tensor:
        g = self.lstm.ih(x8) + self.lstm.hh(h16)
        y = self.fc3(self.act(self.fc2(self.act(self.fc1(x80)))))
        return torch.cat([g, y], dim=-1)


@pytest.mark.parametrize("block", [2, 4, 8, 16])
def test_compress_model(block):
    torch.manual_seed(0)
    model = _Tiny().double()
    ref = _Tiny().double()
    targets = ["fc1", "fc2", "fc3", "lstm.ih", "lstm.hh"]
    with torch.no_grad():                               # ref: dense layers holding the projected weights
        for name in targets:
            src, dst = model.get_submodule(name), ref.get_submodule(name)
            dst.weight.copy_(circulant_to_dense(project_to_circulant(src.weight, block), *src.weight.shape))
            dst.bias.copy_(src.bias)
    before = {n: sum(p.numel() for p in model.get_submodule(n).parameters()) for n in targets}
    report = compress_model(model, block, targets)
    assert list(report) == targets
    for name in targets:
        layer = model.get_submodule(name)
        assert isinstance(layer, BlockCirculantLinear) and layer.block == block
        assert layer.weight.dtype == torch.float64
        r = report[name]
        assert r["name"] == name and r["params_before"] == before[name] and r["params_after"] == layer.n_params()
        assert r["params_after"] < r["params_before"]
    args = [torch.randn(4, n, generator=_gen(i), dtype=torch.float64) for i, n in enumerate((8, 16, 80))]
    torch.testing.assert_close(model(*args), ref(*args), atol=1e-10, rtol=0)


def test_compress_model_bad_names_change_nothing():
    model = _Tiny()
    for bad in (["fc9"], ["lstm.xx"], ["act"], ["lstm"], ["fc1", "fc1"], [""], ["fc1", "nope"]):
        with pytest.raises(ValueError):
            compress_model(model, 4, bad)
    assert all(isinstance(m, nn.Linear) for m in (model.fc1, model.lstm.ih))   # atomic: fc1 untouched
    with pytest.raises(ValueError, match="not nn.Linear"):
        compress_model(model, 4, ["act"])
    with pytest.raises(ValueError, match="no submodule"):
        compress_model(model, 4, ["fc4"])


def test_blocks_respect_gates():
    for k in (1, 2, 4, 8, 16):
        assert blocks_respect_gates(16, k)
    assert not blocks_respect_gates(16, 32) and not blocks_respect_gates(12, 8) and not blocks_respect_gates(2, 4)
    # the property it claims: every block's rows lie inside one gate of the stacked (4H, .) matrix
    for hidden in (2, 6, 12, 16):
        for k in (1, 2, 4, 8, 16):
            rows = torch.arange(math.ceil(4 * hidden / k) * k).reshape(-1, k).clamp(max=4 * hidden - 1)
            one_gate = bool(((rows // hidden) == (rows[:, :1] // hidden)).all())
            assert blocks_respect_gates(hidden, k) == (one_gate and (4 * hidden) % k == 0)


def test_compress_gendernet():
    from gclf.backends.torch_float import GraphNet, n_params
    from gclf.graph.models import build_graph

    torch.manual_seed(0)
    model = GraphNet(build_graph()).eval()
    x = torch.randn(2, 40, 99, generator=_gen())
    before = n_params(model)
    report = compress_model(model, 8, ["fc1", "fc2", "fc3", "lstm.ih", "lstm.hh"])
    saved = sum(r["params_before"] - r["params_after"] for r in report.values())
    assert n_params(model) == before - saved and saved > 0
    assert blocks_respect_gates(model.lstm.hidden, 8)
    assert model(x).shape == (2, 2) and torch.isfinite(model(x)).all()
