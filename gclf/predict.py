"""`gclf predict`: label and class probabilities per audio file, averaged over the run's models, each
computed by the chosen engine (default: the chain's own arithmetic, e.g. the integer reference after
`gclf quantize`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gclf.checkpoint import checkpoint_paths, graph_of, load_checkpoint
from gclf.data.corpus import load_audio
from gclf.data.features import FeatureConfig, cut_windows, frames
from gclf.data.vad import SpeechConfig, speech_seconds
from gclf.errors import GclfError


def load_models(model_path: str | Path, engine: str = "auto") -> list[tuple]:
    """(probability function, feature config, classes) of final.pt of a run if present, else of all its fold
    models (an ensemble)."""
    from gclf.backends.engines import prob_fn_for

    paths = checkpoint_paths(model_path, include_final=True)       # a run folder is checked as a whole
    if paths[-1].name == "final.pt" and len(paths) > 1:
        paths = paths[-1:]
    out = []
    for p in paths:
        ck = load_checkpoint(p)
        out.append((prob_fn_for(ck, engine), FeatureConfig.from_dict(ck["feature_config"]), graph_of(ck).classes))
    return out


NO_SPEECH = "no speech"


@torch.no_grad()
def predict_file(path: str | Path, models: list[tuple], speech: SpeechConfig = SpeechConfig()) -> dict:
    """Class probabilities of one file: mean over its windows, then over the models. A clip without speech
    (:mod:`gclf.data.vad`: silence, hiss, white noise) gets the label "no speech" and no probabilities."""
    probs, cache = [], {}
    for fn, fcfg, classes in models:
        if fcfg not in cache:
            audio = load_audio(path, fcfg.sample_rate)
            if audio.size / fcfg.sample_rate < fcfg.min_seconds:
                raise GclfError(f"{path}: shorter than {fcfg.min_seconds} s")
            voiced = speech_seconds(audio, fcfg.sample_rate, speech)
            if voiced < speech.min_speech_seconds:
                return {"file": str(path), "label": NO_SPEECH, "probabilities": None,
                        "speech_seconds": round(voiced, 2), "windows": 0}
            cache[fcfg] = (audio, torch.from_numpy(cut_windows(frames(audio, fcfg), fcfg)))
        from_pcm = getattr(fn, "from_pcm", None)           # the c engine of an int_mfcc model: PCM in
        if from_pcm is not None:
            from gclf.frontend.intref import pcm16

            probs.append(np.asarray(from_pcm(pcm16(cache[fcfg][0]))).mean(axis=0))
        else:
            probs.append(np.asarray(fn(cache[fcfg][1])).mean(axis=0))
    p = np.mean(probs, axis=0)
    classes = models[0][2]
    k = len(p) - 1 - int(np.argmax(p[::-1]))              # a tie goes to the later class, as in evaluation
    return {"file": str(path), "label": classes[k], "probabilities": {c: round(float(v), 4) for c, v in zip(classes, p)},
            "windows": int(len(next(iter(cache.values()))[1]))}
