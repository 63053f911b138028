"""--device: auto picks CUDA, else MPS, else the CPU and says which; an absent device is a one-line error."""
from __future__ import annotations

import sys

import pytest
import torch

from gclf.cli import main
from gclf.errors import GclfError
from gclf.train.device import resolve_device


def test_auto_prefers_cuda_then_mps_then_cpu():
    assert resolve_device("auto", {"cpu": True, "cuda": True, "mps": True}) == "cuda"
    assert resolve_device("auto", {"cpu": True, "mps": True}) == "mps"
    assert resolve_device("auto", {"cpu": True}) == "cpu"
    assert resolve_device("mps", {"cpu": True, "mps": True}) == "mps"


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="an accelerator is here")
def test_auto_is_the_cpu_here_and_an_absent_device_is_refused():
    assert resolve_device("auto") == "cpu"
    with pytest.raises(GclfError, match="'cuda' is not available"):
        resolve_device("cuda")
    with pytest.raises(GclfError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")
@pytest.mark.parametrize("cmd", ["train", "search"])
def test_cli_absent_device_is_one_line(cmd, synth_corpus, monkeypatch, capsys, tmp_path):
    extra = ["--param", "lr=1e-3"] if cmd == "search" else []
    monkeypatch.setattr(sys, "argv", ["gclf", cmd, "--data", str(synth_corpus), "--out", str(tmp_path / "o"),
                                      "--device", "cuda", *extra])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error: device 'cuda' is not available") and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()                             # refused before any work
