"""`gclf search`: the candidates, nested speaker-disjoint CV (outer test speakers never choose), the trial
table that a second run resumes, parallel trials, and the configuration file `gclf train --config` reads."""
from __future__ import annotations

import csv
import io
import json
import sys

import pytest
from click.testing import CliRunner

from gclf.checkpoint import chain_of, graph_of, load_checkpoint
from gclf.cli import cli, main
from gclf.data.features import FeatureConfig
from gclf.errors import GclfError
from gclf.graph.models import build_graph
from gclf.search.nested import SearchConfig, inner_splits, nested_search
from gclf.search.space import (base_values, canonical, candidates, config_key, parse_space, read_config,
                               write_config)
from gclf.train.cv import train_run
from gclf.train.fit import TrainConfig, fold_splits


def test_space_parsing_and_candidates():
    space = parse_space(["lr=1e-3,3e-3", "fc-hidden=64x32,32x16", "lstm_hidden=8"], "cnn_lstm")
    assert space == {"lr": [0.001, 0.003], "fc_hidden": [(64, 32), (32, 16)], "lstm_hidden": [8]}
    assert len(candidates(space, None, 0)) == 4
    a, b = candidates(space, 3, 7), candidates(space, 3, 7)
    assert a == b and len({config_key(c) for c in a}) == 3          # seeded, no repeats
    for bad, msg in [(["lr"], "NAME=V1"), (["speed=1,2"], "not a hyperparameter"), ([], "nothing to search"),
                     (["seed=1,2"], "not a hyperparameter")]:
        with pytest.raises(GclfError, match=msg):
            parse_space(bad, "cnn_lstm")


def test_a_candidate_equal_to_the_default_is_the_default():
    base = base_values("cnn_lstm", TrainConfig())
    assert canonical({"lr": 3e-3, "fc_hidden": (64, 32), "lstm_hidden": 8}, base) == {"lstm_hidden": 8}
    assert canonical({"lr": 0.003}, base) == {}


def test_inner_folds_use_outer_training_speakers_only(synth_features):
    utts, _ = synth_features
    scfg = SearchConfig(outer=4, inner=3, seed=2)
    outer = fold_splits(utts, scfg.outer, scfg.seed)
    seen = {}
    for i, j, tr_utts, itr, its, seed in inner_splits(utts, outer, scfg):
        train_spk, test_spk = outer[i - 1]
        assert not (set(itr) | set(its)) & set(test_spk)             # outer test speakers never choose
        assert not set(itr) & set(its)
        assert {u.speaker for u in tr_utts} == set(train_spk)
        seen.setdefault(i, []).extend(its)
    for i, tested in seen.items():                                     # each outer-training speaker tested once
        assert sorted(tested) == sorted(outer[i - 1][0])


def _rows(path):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(io.StringIO(path.read_text()))]


def test_nested_search_resumes_in_parallel_and_matches_gclf_train(synth_features, tmp_path):
    utts, info = synth_features
    utts = utts[:18]
    tcfg = TrainConfig(epochs=2, min_windows=64, seed=4, folds=3)
    scfg = SearchConfig(outer=3, inner=2, seed=4)
    space = {"lr": [3e-3, 1e-2]}
    fcfg, out = FeatureConfig(), tmp_path / "s"
    r = nested_search(utts, out, "cnn_lstm", space, candidates(space, None, 0), fcfg, tcfg, scfg,
                      corpus=info["corpus"])
    rows = _rows(out / "trials.csv")
    assert sum(x["phase"] == "inner" for x in rows) == 3 * 2 * 2
    assert {x["config"] for x in rows} == {"{}", '{"lr": 0.01}'}       # lr=3e-3 is the default: one key
    assert len(r["nested"]["per_fold"]) == 3 == len(r["default"]["per_fold"])
    arch, t, m = read_config(out / "best_config.json")
    assert arch == "cnn_lstm" and t["lr"] in (3e-3, 1e-2) and m == {}
    # the default's outer trials are gclf train's folds (same speakers, same seeds): the same figures
    ref = train_run(utts, tmp_path / "train", build_graph(), fcfg, tcfg, info["corpus"])
    assert r["default"]["per_fold"] == [f["accuracy_utterance"] for f in ref["folds"]]
    # interrupted: drop the last trials; a second run (two worker processes) reruns exactly those
    text = (out / "trials.csv").read_text().splitlines(keepends=True)
    (out / "trials.csv").write_text("".join(text[:6]))
    ran = []
    nested_search(utts, out, "cnn_lstm", space, candidates(space, None, 0), fcfg, tcfg, scfg, corpus=info["corpus"],
                  workers=2, on_trial=lambda row, done, total: ran.append(row))
    assert len(ran) == len(rows) - 5
    assert _rows(out / "trials.csv") == rows                          # seeded trials: the same table
    with pytest.raises(GclfError, match="other settings"):
        nested_search(utts, out, "cnn_lstm", {"lr": [1e-3]}, [{"lr": 1e-3}], fcfg, tcfg, scfg, corpus=info["corpus"])


def test_train_reads_a_config_file_and_options_win(synth_corpus, synth_features, tmp_path):
    cfg = tmp_path / "best.json"
    write_config(cfg, "cnn_lstm", {"lr": 1e-2, "patience": 3, "lstm_hidden": 8, "fc_hidden": (32, 16)})
    common = ["train", "--data", str(synth_corpus), "--folds", "2", "--epochs", "1", "--no-final", "--no-augment",
              "--config", str(cfg), "--json", "--device", "auto"]
    r = CliRunner().invoke(cli, [*common, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "device: cpu (auto)" in r.stderr
    ck = load_checkpoint(tmp_path / "a" / "fold1.pt")
    train = chain_of(ck)[0].config
    assert train["lr"] == 1e-2 and train["patience"] == 3 and train["epochs"] == 1
    assert graph_of(ck).config["lstm_hidden"] == 8 and list(graph_of(ck).config["fc_hidden"]) == [32, 16]
    r = CliRunner().invoke(cli, [*common, "--out", str(tmp_path / "b"), "--lr", "0.002"])
    assert r.exit_code == 0, r.output
    assert chain_of(load_checkpoint(tmp_path / "b" / "fold1.pt"))[0].config["lr"] == 0.002


@pytest.mark.parametrize("args, msg", [
    (["search", "--param", "nonsense=1,2"], "error: --param nonsense: not a hyperparameter"),
    (["train", "--config", "missing.json"], "error: missing.json: cannot read the configuration"),
])
def test_search_and_config_errors_are_one_line(synth_corpus, monkeypatch, capsys, args, msg):
    monkeypatch.setattr(sys, "argv", ["gclf", *args, "--data", str(synth_corpus)])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith(msg) and len(err.splitlines()) == 1


def test_search_help():
    r = CliRunner().invoke(cli, ["search", "--help"])
    assert r.exit_code == 0 and "--param" in r.output and "--json" in r.output and "nested" in r.output


def test_search_refuses_a_task_other_than_sex_in_one_line(tmp_path, monkeypatch, capsys):
    """Search builds the sex task's network: on a keyword corpus it says so before any work."""
    from tests.test_layouts_tasks import write_speech_commands

    root = write_speech_commands(tmp_path / "sc")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["gclf", "search", "--data", str(root), "--param", "lr=1e-3,3e-3"])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "sex task" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_search_cli_starts_from_gclf_trains_recipe(synth_corpus, synth_features, monkeypatch, tmp_path):
    """`gclf search` varies gclf train's sex recipe (issue 15: 16 MFCCs, weight average), not the library's
    defaults: the features, the training settings and the base configuration it hands the search."""
    import gclf.search.nested as nested

    seen = {}

    def fake(utts, out, arch, space, cands, fcfg, tcfg, scfg, model_base, corpus, *rest):
        seen.update(fcfg=fcfg, tcfg=tcfg, model_base=model_base, config=rest[-1], shape=utts[0].mfcc.shape)
        return {"stub": True}
    monkeypatch.setattr(nested, "nested_search", fake)
    r = CliRunner().invoke(cli, ["search", "--data", str(synth_corpus), "--cache", str(tmp_path / "pkl"), "--out",
                                 str(tmp_path / "s"), "--param", "lr=1e-3,3e-3", "--no-augment", "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert seen["fcfg"].n_mfcc == 16 and seen["shape"][0] == 16 and seen["tcfg"].ema == 0.995
    assert seen["model_base"] == {"n_mfcc": 16} and seen["config"] == {"n_mfcc": 16}
