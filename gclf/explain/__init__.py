"""Layer-wise relevance propagation (LRP) for gclf graphs: which MFCC coefficients and frames a prediction
rests on. :mod:`rules` (one rule per op kind), :mod:`lrp` (a batch of windows), :mod:`maps` (whole
utterances), :mod:`deletion` (the deletion check), :mod:`plot` (PNG), :mod:`run` (what `gclf explain` does)."""
