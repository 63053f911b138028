"""One inference at batch 1, and the whole held-out evaluation, for every step of the chain and its peers.

Every benchmark attaches to ``extra_info`` what gclf.report.table needs: the step's label and chain, the runtime,
utterance accuracy (mean ± std over folds, each fold model on its own held-out speakers), window accuracy,
weight bytes and how many windows one timed call covers.
"""
from __future__ import annotations

import pytest

from benchmarks.engines import ENGINES

NAMES = list(ENGINES)


@pytest.mark.benchmark(group="batch 1: one window, one thread")
@pytest.mark.parametrize("name", NAMES)
def test_batch1(benchmark, engines, name):
    engine = engines(name)
    benchmark.extra_info.update(engine.info("batch1"))
    benchmark(engine.folds[0].one)


@pytest.mark.benchmark(group="whole evaluation: all held-out windows, one thread")
@pytest.mark.parametrize("name", NAMES)
def test_evaluation(benchmark, engines, name):
    engine = engines(name)
    probs = benchmark.pedantic(engine.evaluate, rounds=3, iterations=1)
    benchmark.extra_info.update(engine.info("evaluation", probs))
    assert engine.notes.get("mismatches_vs_integer_reference", 0) == 0     # the C is bit exact
