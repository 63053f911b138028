"""Training with speaker-disjoint k-fold cross-validation, early stopping on held-out training speakers.

Recipe for speaker- and channel-independence: per-window cepstral mean normalisation (in the model),
training-set feature scaling, random time shifts of the training windows, Gaussian feature noise,
dropout, weight decay, label smoothing, and utterance-level averaging of window probabilities.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from gclf.data.augment import AugmentConfig
from gclf.data.corpus import speaker_folds, split_validation
from gclf.data.dataset import eval_windows, random_windows, select
from gclf.train.augment import epoch_utterances, mask_batch, mix_batch
from gclf.train.evaluate import evaluate, torch_prob_fn
from gclf.train.resume import Checkpointing, capture, load_state, restore, save_state
from gclf.data.features import FeatureConfig, UtteranceFeatures
from gclf.backends.torch_float import GraphNet
from gclf.frontend.features import input_frac_of
from gclf.graph.ops import Graph


@dataclass
class TrainConfig:
    epochs: int = 60            # upper bound; early stopping usually ends sooner
    lr: float = 3e-3            # AdamW
    batch_size: int = 64
    weight_decay: float = 1e-3
    patience: int = 12          # epochs without validation-loss improvement
    val_fraction: float = 0.15  # training speakers held out for early stopping
    feature_noise: float = 0.1  # std of Gaussian noise added to normalised features
    label_smoothing: float = 0.05
    mixup: float = 0.0          # mixup's Beta(a, a) parameter (train.augment.mix_batch); 0: off, nothing drawn
    min_windows: int = 1024     # an epoch samples at least this many windows (small corpora)
    folds: int = 5
    seed: int = 0
    threads: int = 1            # torch intra-op threads (this model is too small to gain from more;
                                # under load, more threads are many times slower); 0 = torch's default
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # default: no augmentation beyond the above
    device: str = "cpu"         # a torch device name, resolved (gclf.train.device): cpu, cuda or mps
    ema: float = 0.0            # decay per optimiser step of an exponential moving average of the weights
                                # (WeightEMA); validation, early stopping and the kept weights are then the
                                # average's. 0 = off: the weights of the best epoch, as trained


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


NORM_ONE_PASS = 4096  # up to this many training windows (~65 MB of 40x99), the normaliser reads them at once
NORM_CHUNK = 512      # beyond: windows per step of its streamed float64 sums
VAL_CHUNK = 512       # validation windows per forward pass


@torch.no_grad()
def fit_normalizer(model: GraphNet, utts: list[UtteranceFeatures], fcfg: FeatureConfig) -> None:
    """Set InputNorm's offset/scale from the training windows (after per-window mean removal).

    Up to NORM_ONE_PASS windows: one float32 pass over all of them at once (as gclf always computed it,
    so the figures of such a corpus do not move). More: streamed NORM_CHUNK at a time, with float64 sums,
    so memory stays bounded."""
    ws = eval_windows(utts, fcfg)
    cmn = model.input_norm().cmn
    if len(ws.y) <= NORM_ONE_PASS:
        x = ws.x
        if cmn:
            x = x - x.mean(dim=-1, keepdim=True)
        mean, std = x.mean(dim=(0, 2)), x.std(dim=(0, 2))
    else:
        n, s1, s2 = 0, 0.0, 0.0
        for x, _ in ws.batches(NORM_CHUNK):
            x = x.double()
            if cmn:
                x = x - x.mean(dim=-1, keepdim=True)
            n += x.shape[0] * x.shape[2]
            s1 = s1 + x.sum(dim=(0, 2))
            s2 = s2 + (x * x).sum(dim=(0, 2))
        m64 = s1 / n
        mean, std = m64.float(), ((s2 - n * m64 * m64) / (n - 1)).clamp_min(0).sqrt().float()
    model.input_norm().offset.copy_(mean)
    model.input_norm().scale.copy_(1.0 / std.clamp_min(1e-3))


class WeightEMA:
    """An exponential moving average of a model's parameters, updated after every optimiser step, in a copy of
    the model (``.model``). The decay ramps up as in TensorFlow's ExponentialMovingAverage,
    ``min(decay, (1 + n) / (10 + n))`` at update n, so the first updates do not drag the average towards
    the initial weights. The ramp stays below ``decay`` for the first (10 decay - 1) / (1 - decay) updates
    (1,790 at 0.995): in a run shorter than that (librispeech-251: ~30-40 steps an epoch, 20-50 epochs) the
    average is the ramp's, which weighs update m of n about as (m / n)^8: 92 % of the weight on the last
    quarter of the updates. Buffers (InputNorm's offset and scale, batch-norm statistics) are copied, not
    averaged: the normaliser stays bit-identical to the trained model's."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model)
        self.model.eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for a, p in zip(self.model.parameters(), model.parameters()):
            a.mul_(d).add_(p.detach(), alpha=1.0 - d)
        for a, b in zip(self.model.buffers(), model.buffers()):
            a.copy_(b)

    def state(self) -> dict:
        return {"weights": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "updates": self.updates}

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["weights"])
        self.updates = int(state["updates"])


def _epoch(model, x, y, opt, tcfg: TrainConfig, gen: torch.Generator, loss_fn=None,
           ema: WeightEMA | None = None) -> tuple[float, float]:
    dev = torch.device(tcfg.device)
    model.train()
    if loss_fn is not None:
        loss_fn.train()
    perm = torch.randperm(len(x), generator=gen)
    total, correct = 0.0, 0
    for i in range(0, len(x), tcfg.batch_size):
        idx = perm[i:i + tcfg.batch_size]
        xb, yb = mask_batch(x[idx], tcfg.augment, gen), y[idx]
        if dev.type != "cpu":       # the generators stay on the CPU: the same draws on every device
            xb, yb = xb.to(dev), yb.to(dev)
        if tcfg.feature_noise > 0:  # noise in normalised units: divide by InputNorm's scale
            noise = tcfg.feature_noise * torch.randn(xb.shape, generator=gen)
            xb = xb + (noise if dev.type == "cpu" else noise.to(dev)) / model.input_norm().scale[:, None]
        if tcfg.mixup > 0:
            xb, pair, lam = mix_batch(xb, tcfg.mixup, gen)
        logits = model(xb) if loss_fn is None else loss_fn(xb)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=tcfg.label_smoothing)
        if tcfg.mixup > 0:
            loss = lam * loss + (1.0 - lam) * F.cross_entropy(logits.float(), yb[pair.to(yb.device)],
                                                              label_smoothing=tcfg.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update(model)
        total += loss.item() * len(idx)
        correct += int((logits.argmax(1) == yb).sum())
    return total / len(x), correct / len(x)


@torch.no_grad()
def _val_loss(model, ws) -> float:
    """Mean cross-entropy over the validation windows, VAL_CHUNK windows per forward pass."""
    model.eval()
    total = 0.0
    dev = next(model.parameters()).device
    for x, y in ws.batches(VAL_CHUNK):
        if dev.type != "cpu":
            x, y = x.to(dev), y.to(dev)
        total += float(F.cross_entropy(model(x).float(), y)) * len(y)
    return total / len(ws.y)


def _prob_fn(net, dev: torch.device):
    """torch_prob_fn, with the windows moved to ``dev`` and the probabilities back to the CPU."""
    if dev.type == "cpu":
        return torch_prob_fn(net)

    @torch.no_grad()
    def fn(x):
        net.eval()
        return torch.softmax(net(x.to(dev)).double(), dim=1).cpu().numpy()
    return fn


def fit(model: torch.nn.Module, train: list[UtteranceFeatures], val: list[UtteranceFeatures],
        fcfg: FeatureConfig, tcfg: TrainConfig, log: Callable[[dict], None] | None = None,
        seed: int = 0, forward: Callable | None = None, checkpointing: Checkpointing | None = None) -> dict:
    """Train ``model`` in place; keeps the weights of the best validation loss. Returns the history.

    ``forward`` (e.g. a fake-quant view of ``model``) replaces ``model`` in training and validation;
    the optimiser always updates ``model``'s parameters. ``checkpointing``: save the training state
    (:mod:`gclf.train.resume`) every few epochs, and continue from the state already saved there, if any,
    to the result of an uninterrupted run. The model is trained on ``tcfg.device`` and returned on the CPU.
    ``tcfg.ema`` > 0: validation and the kept weights are those of a moving average of the weights
    (:class:`WeightEMA`); not with ``forward``.
    """
    if tcfg.ema and forward is not None:
        from gclf.errors import GclfError

        raise GclfError("weight averaging (TrainConfig.ema) is not available with a forward view (fine-tuning "
                        "through fake quantisation)")
    net = forward if forward is not None else model
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    dev = torch.device(tcfg.device)
    if dev.type != "cpu":
        model.to(dev)
        if net is not model and isinstance(net, torch.nn.Module):
            net.to(dev)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(tcfg.epochs, 1))
    ema = WeightEMA(model, tcfg.ema) if tcfg.ema else None
    judged = ema.model if ema is not None else net      # what validation measures and early stopping keeps
    val_ws = eval_windows(val, fcfg) if val else None
    best, best_state, since, history = float("inf"), copy.deepcopy(model.state_dict()), 0, []
    start, done = 1, False
    saved = load_state(checkpointing.path) if checkpointing else None
    if saved is not None:
        st = restore(saved, model=model, opt=opt, sched=sched, gen=gen, rng=rng)
        if ema is not None:
            if saved.get("ema") is None:
                from gclf.errors import GclfError

                raise GclfError(f"{checkpointing.path}: saved without weight averaging; delete it to restart that fold")
            ema.load(saved["ema"])
        best, best_state, since, history, done = st["best"], st["best_state"], st["since"], st["history"], st["done"]
        start = st["epoch"] + 1
        for row in history if log else ():
            log(row)
    for epoch in range(start, 0 if done else tcfg.epochs + 1):
        x, y = random_windows(epoch_utterances(train, tcfg.augment, rng), fcfg, rng, tcfg.min_windows)
        tr_loss, tr_acc = _epoch(model, x, y, opt, tcfg, gen, forward, ema)
        net.eval()
        sched.step()
        row = {"epoch": epoch, "train_loss": tr_loss, "train_acc": tr_acc}
        if val_ws is not None:
            row["val_loss"] = _val_loss(judged, val_ws)
            row["val_acc_utterance"] = evaluate(_prob_fn(judged, dev), val_ws, model.graph.classes)["accuracy_utterance"]
        history.append(row)
        if log:
            log(row)
        score = row.get("val_loss", tr_loss)
        if score < best - 1e-4:
            best, best_state, since = score, copy.deepcopy((ema.model if ema is not None else model).state_dict()), 0
        else:
            since += 1
        stop = since >= tcfg.patience or epoch == tcfg.epochs
        if checkpointing and (stop or epoch % checkpointing.every == 0):
            save_state(checkpointing.path, capture(epoch=epoch, done=stop, model=model, opt=opt, sched=sched, gen=gen,
                                                   rng=rng, best=best, best_state=best_state, since=since,
                                                   history=history, ema=ema.state() if ema is not None else None))
        if since >= tcfg.patience:
            break
    if dev.type != "cpu":
        model.to("cpu")
        if net is not model and isinstance(net, torch.nn.Module):
            net.to("cpu")
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best_val_loss": best, "epochs_run": len(history)}


def train_fold(utts: list[UtteranceFeatures], train_speakers: dict[str, str], test_speakers: list[str],
               graph: Graph, fcfg: FeatureConfig, tcfg: TrainConfig, seed: int,
               log: Callable[[dict], None] | None = None,
               checkpointing: Checkpointing | None = None) -> tuple[GraphNet, dict, dict]:
    """Train one model on ``train_speakers`` (minus a validation share) and evaluate on ``test_speakers``
    (``checkpointing``: see :func:`fit`)."""
    set_seed(seed)
    tr_spk, val_spk = split_validation(train_speakers, tcfg.val_fraction, seed)
    train, val = select(utts, tr_spk), select(utts, val_spk)
    model = GraphNet(graph)
    model.int_input_frac = input_frac_of(fcfg)          # the integer front-end's models normalise in integers
    fit_normalizer(model, train, fcfg)
    hist = fit(model, train, val, fcfg, tcfg, log=log, seed=seed, checkpointing=checkpointing)
    test = select(utts, test_speakers)
    metrics = evaluate(torch_prob_fn(model), eval_windows(test, fcfg), graph.classes) if test else {}
    split = {"train_speakers": tr_spk, "val_speakers": val_spk, "test_speakers": sorted(test_speakers)}
    return model, metrics, {"split": split, **hist}


def speaker_strata(utts: list[UtteranceFeatures]) -> dict[str, str]:
    """{speaker: stratum} for stratified folds: a speaker's label where all their utterances share one (sex,
    age; a keyword corpus's silence clips), else "*" (speakers who say many words or digits)."""
    labels: dict[str, set[str]] = {}
    for u in utts:
        labels.setdefault(u.speaker, set()).add(u.target)
    return {s: next(iter(ls)) if len(ls) == 1 else "*" for s, ls in labels.items()}


def fold_count(n_speakers: int, k: int) -> int:
    """``k``, or leave-one-speaker-out (one fold per speaker) when there are no more than ``k`` speakers."""
    return min(k, n_speakers)


def fold_splits(utts: list[UtteranceFeatures], k: int, seed: int) -> list[tuple[dict[str, str], list[str]]]:
    """(training speakers with their stratum, test speakers) per fold; leave-one-speaker-out when there are
    no more than ``k`` speakers (FSDD's 5)."""
    speakers = speaker_strata(utts)
    folds = speaker_folds(speakers, fold_count(len(speakers), k), seed)
    out = []
    for test in folds:
        tset = set(test)
        out.append(({s: x for s, x in speakers.items() if s not in tset}, test))
    return out


def write_log_csv(path: Path, rows: list[dict]) -> None:
    from gclf.io import atomic_text

    keys = ["fold", "epoch", "train_loss", "train_acc", "val_loss", "val_acc_utterance"]
    lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in rows]
    atomic_text(path, "\n".join(lines) + "\n")


def plot_curves(path: Path, rows: list[dict]) -> None:
    """Loss and validation accuracy per epoch, one line per fold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for n, fold in enumerate(sorted({r["fold"] for r in rows}, key=str)):
        rs = [r for r in rows if r["fold"] == fold]
        ep, col = [r["epoch"] for r in rs], f"C{n % 10}"    # one colour per fold
        a.plot(ep, [r["train_loss"] for r in rs], "-", color=col, label=f"{fold} train")
        if "val_loss" in rs[0]:
            a.plot(ep, [r["val_loss"] for r in rs], "--", color=col, label=f"{fold} val")
            b.plot(ep, [r["val_acc_utterance"] for r in rs], "-", color=col, label=f"{fold} val (utterance)")
        b.plot(ep, [r["train_acc"] for r in rs], ":", color=col, label=f"{fold} train (window)")
    a.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0.4, 1.01))
    a.legend(fontsize=6)
    b.legend(fontsize=6)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
