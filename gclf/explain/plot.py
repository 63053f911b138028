"""The PNG of an explanation: the MFCC frames, the relevance heatmap over them (red: for the explained class,
blue: against it) and the relevance per frame, titled with the label and its probability."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gclf.data.features import FeatureConfig
from gclf.explain.maps import UtteranceMap


def title_of(u: UtteranceMap, note: str = "") -> str:
    p = float(u.probabilities[u.classes.index(u.label)])
    truth = f", true {u.true_label}" if u.true_label is not None else ""
    other = "rest" if len(u.classes) > 2 else u.classes[1 - u.target]
    return (f"{Path(u.name).name}: {u.label} (p={p:.3f}{truth}); relevance for {u.classes[u.target]} vs {other}"
            + (f"\n{note}" if note else ""))


def plot_map(path: str | Path, u: UtteranceMap, fcfg: FeatureConfig, note: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    c, t = u.mfcc.shape
    seconds = t * fcfg.hop_length / fcfg.sample_rate
    extent = (0, seconds, -0.5, c - 0.5)
    fig, (a, b, d) = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 3, 1.4]})
    m = u.mfcc - u.mfcc.mean(axis=1, keepdims=True)              # each coefficient standardised over the
    m = m / np.maximum(m.std(axis=1, keepdims=True), 1e-9)       # utterance (the network removes the mean too)
    a.imshow(m, aspect="auto", origin="lower", cmap="viridis", extent=extent, vmin=-3, vmax=3)
    a.set(ylabel="MFCC (standardised)", title=title_of(u, note))
    r = u.relevance
    lim = float(np.percentile(np.abs(r), 99.5)) or 1.0           # a few extreme values would wash the rest out
    im = b.imshow(r, aspect="auto", origin="lower", cmap="bwr", extent=extent, vmin=-lim, vmax=lim)
    b.set(ylabel="MFCC coefficient", title=f"LRP relevance (sum {r.sum():.3g} of score {u.score:.3g})")
    fig.colorbar(im, ax=[a, b, d], fraction=0.02, pad=0.01, label="relevance")
    times = (np.arange(t) + 0.5) * fcfg.hop_length / fcfg.sample_rate
    per_frame = r.sum(axis=0)
    d.bar(times, per_frame, width=fcfg.hop_length / fcfg.sample_rate,
          color=np.where(per_frame >= 0, "tab:red", "tab:blue"))
    d.axhline(0, color="k", lw=0.5)
    d.set(xlabel="time (s)", ylabel="per frame", xlim=(0, seconds))
    tmp = path.with_name(f".{path.stem}.tmp.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path
