"""Block-circulant linear layers (CirCNN / C-LSTM) and the projection of dense weights onto them.

An (out x in) matrix is zero-padded to (p*k x q*k), ``p = ceil(out/k)``, ``q = ceil(in/k)``, and split
into k x k blocks. Block (a, b) is circulant, defined by one length-k vector ``c = weight[a, b]``:

    C[i, j] = c[(i - j) mod k]        (c is the block's first column)

so ``dense[a*k + i, b*k + j] = weight[a, b, (i - j) % k]``, cropped back to (out, in). A block stores k
numbers instead of k*k. Its product with x is a circular convolution, ``irfft(rfft(c) * rfft(x), n=k)``,
which is how :class:`BlockCirculantLinear` runs in float training. Hardware / integer references use
:func:`circulant_to_dense` and multiply the materialised matrix directly.

:func:`project_to_circulant` gives the nearest block-circulant matrix in the Frobenius norm, measured
over the real (unpadded) entries only: padding entries do not exist, so each vector entry is the mean of
the real entries on its wrapped diagonal.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

__all__ = ["BlockCirculantLinear", "project_to_circulant", "circulant_to_dense", "convert_linear",
           "compress_model", "blocks_respect_gates"]


def _check_block(block: int) -> int:
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block size must be a positive integer, got {block!r}")
    return block


def _diag_index(k: int, device: torch.device | None = None) -> torch.Tensor:
    """(k, k) long tensor with entry (i, j) = (i - j) mod k: the wrapped diagonal of each block entry."""
    r = torch.arange(k, device=device)
    return (r[:, None] - r[None, :]) % k


def circulant_to_dense(vectors: torch.Tensor, out_features: int, in_features: int) -> torch.Tensor:
    """Materialise block-circulant ``vectors`` (p, q, k) as the cropped (out_features, in_features) matrix.

    ``dense[a*k + i, b*k + j] = vectors[a, b, (i - j) % k]``. Differentiable; works for any dtype
    (integer tensors included, for fixed-point references).
    """
    p, q, k = vectors.shape
    if not (p * k - k < out_features <= p * k and q * k - k < in_features <= q * k):
        raise ValueError(f"vectors of shape {tuple(vectors.shape)} do not fit a "
                         f"{out_features}x{in_features} matrix with block {k}")
    blocks = vectors[:, :, _diag_index(k, vectors.device)]           # (p, q, k, k)
    dense = blocks.permute(0, 2, 1, 3).reshape(p * k, q * k)
    return dense[:out_features, :in_features]


def _to_blocks(m: torch.Tensor, k: int) -> torch.Tensor:
    """Zero-pad an (out, in) matrix to multiples of k and return its blocks as (p, q, k, k)."""
    out_f, in_f = m.shape
    p, q = math.ceil(out_f / k), math.ceil(in_f / k)
    padded = m.new_zeros(p * k, q * k)
    padded[:out_f, :in_f] = m
    return padded.reshape(p, k, q, k).permute(0, 2, 1, 3)


def project_to_circulant(weight: torch.Tensor, block: int) -> torch.Tensor:
    """Nearest block-circulant vectors (p, q, block) to a dense (out, in) ``weight``.

    For each block, ``c[d]`` is the mean of the *real* entries on wrapped diagonal d (``(i - j) % k == d``);
    padding entries are not counted, and a diagonal with no real entries gets 0. This minimises
    ``||weight - circulant_to_dense(c)||_F`` (the crop removes padding), i.e. it is the orthogonal
    least-squares projection onto block-circulant matrices restricted to the real entries.
    """
    k = _check_block(block)
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    w = weight.detach()
    if not w.is_floating_point():
        w = w.double()
    onehot = torch.nn.functional.one_hot(_diag_index(k, w.device), k).to(w.dtype)  # (k, k, d)
    sums = torch.einsum("pqij,ijd->pqd", _to_blocks(w, k), onehot)
    counts = torch.einsum("pqij,ijd->pqd", _to_blocks(torch.ones_like(w), k), onehot)
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.zeros_like(sums))


class BlockCirculantLinear(nn.Module):
    """y = x W^T + b with W block-circulant: ``weight`` (p, q, block) of first columns, ``bias`` (out,).

    The forward pass runs in the frequency domain (rfft over each length-k block of x, a complex
    multiply-accumulate over the q input blocks, irfft), for any leading dims and float32/float64.
    """

    def __init__(self, in_features: int, out_features: int, block: int, bias: bool = True,
                 device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.in_features, self.out_features, self.block = in_features, out_features, _check_block(block)
        if in_features < 1 or out_features < 1:
            raise ValueError(f"features must be positive, got in={in_features}, out={out_features}")
        self.p, self.q = math.ceil(out_features / block), math.ceil(in_features / block)
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(self.p, self.q, block, **kw))
        self.bias = nn.Parameter(torch.empty(out_features, **kw)) if bias else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Uniform(+-1/sqrt(in)) like nn.Linear: each dense entry gets nn.Linear's distribution."""
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight.uniform_(-bound, bound)
        if self.bias is not None:
            self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., out) via FFT circular convolutions per block."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected last dim {self.in_features}, got {x.shape[-1]}")
        k, lead = self.block, x.shape[:-1]
        pad = self.q * k - self.in_features
        xp = torch.nn.functional.pad(x, (0, pad)) if pad else x
        xf = torch.fft.rfft(xp.reshape(*lead, self.q, k), dim=-1)       # (..., q, f)
        wf = torch.fft.rfft(self.weight, dim=-1)                         # (p, q, f)
        yf = torch.einsum("...qf,pqf->...pf", xf, wf)                    # (..., p, f)
        y = torch.fft.irfft(yf, n=k, dim=-1).reshape(*lead, self.p * k)[..., :self.out_features]
        return y + self.bias if self.bias is not None else y

    def dense_weight(self) -> torch.Tensor:
        """The materialised (out, in) matrix (differentiable w.r.t. ``weight``)."""
        return circulant_to_dense(self.weight, self.out_features, self.in_features)

    def n_params(self) -> int:
        """Stored numbers: p*q*block (+ out for the bias)."""
        return self.weight.numel() + (self.bias.numel() if self.bias is not None else 0)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, block={self.block}, "
                f"bias={self.bias is not None}")

    @classmethod
    def from_dense(cls, weight: torch.Tensor, bias: torch.Tensor | None, block: int) -> "BlockCirculantLinear":
        """Layer whose weight is the projection of dense ``weight`` (out, in); ``bias`` copied as is."""
        out_f, in_f = weight.shape
        layer = cls(in_f, out_f, block, bias=bias is not None, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(project_to_circulant(weight, block))
            if bias is not None:
                layer.bias.copy_(bias.detach())
        return layer


def convert_linear(module: nn.Linear, block: int) -> BlockCirculantLinear:
    """Projected block-circulant replacement for an ``nn.Linear`` (same device, dtype, train mode)."""
    if not isinstance(module, nn.Linear):
        raise ValueError(f"expected nn.Linear, got {type(module).__name__}")
    layer = BlockCirculantLinear.from_dense(module.weight, module.bias, block)
    return layer.train(module.training)


def blocks_respect_gates(hidden: int, block: int) -> bool:
    """True when no k x k block of a stacked (4*hidden, .) LSTM matrix straddles two gates (i, f, g, o).

    Gate boundaries fall at rows hidden, 2*hidden, 3*hidden; they are block boundaries iff block divides
    hidden (then 4*hidden needs no row padding either), so compressing the stacked matrix is the same as
    compressing each gate's matrix separately.
    """
    _check_block(block)
    if hidden < 1:
        raise ValueError(f"hidden must be positive, got {hidden}")
    return hidden % block == 0


def _resolve_linear(model: nn.Module, name: str) -> nn.Linear:
    if not isinstance(name, str) or not name:
        raise ValueError(f"compress_model: target names must be non-empty dotted strings, got {name!r}")
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"compress_model: no submodule named {name!r}") from None
    if not isinstance(module, nn.Linear):
        raise ValueError(f"compress_model: {name!r} is {type(module).__name__}, not nn.Linear")
    return module


def compress_model(model: nn.Module, block: int, targets: Sequence[str]) -> dict:
    """Replace the named ``nn.Linear`` submodules (dotted names) by projected BlockCirculantLinear, in place.

    All names are checked before anything changes (ValueError for a missing, duplicated or non-Linear
    name). Returns ``{name: {"name", "params_before", "params_after"}}`` in ``targets`` order.
    """
    _check_block(block)
    if isinstance(targets, str):
        targets = [targets]
    if len(set(targets)) != len(targets):
        raise ValueError(f"compress_model: duplicate names in {list(targets)}")
    modules = {name: _resolve_linear(model, name) for name in targets}
    report = {}
    for name, linear in modules.items():
        new = convert_linear(linear, block)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, new)
        before = sum(p.numel() for p in linear.parameters())
        report[name] = {"name": name, "params_before": before, "params_after": new.n_params()}
    return report
