"""Hyperparameter search scored by nested speaker-disjoint cross-validation (``gclf search``)."""
