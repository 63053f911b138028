"""The model: parameter count, window lengths, and the swappable-activation LSTM against nn.LSTM."""
import pytest
import torch

from gclf.model import LSTM, GenderNet, ModelConfig, n_params, valid_frame_range


def test_default_model_has_11834_parameters():
    assert n_params(GenderNet()) == 11834


@pytest.mark.parametrize("frames", [84, 90, 99])
def test_accepts_84_to_99_frames(frames):
    assert GenderNet()(torch.randn(3, 40, frames)).shape == (3, 2)


@pytest.mark.parametrize("frames", [83, 100])
def test_rejects_other_window_lengths(frames):
    with pytest.raises(ValueError, match="LSTM steps"):
        GenderNet()(torch.randn(2, 40, frames))


def test_valid_frame_range():
    assert valid_frame_range(ModelConfig()) == (84, 99)


def test_lstm_matches_torch_lstm_exactly_with_exact_activations():
    torch.manual_seed(0)
    ref = torch.nn.LSTM(8, 16, batch_first=True).double()
    mine = LSTM(8, 16).double()
    mine.load_torch_lstm(ref)
    x = torch.randn(7, 5, 8, dtype=torch.float64)
    torch.testing.assert_close(mine(x), ref(x)[0], rtol=0, atol=1e-12)
    assert sum(p.numel() for p in mine.parameters()) == sum(p.numel() for p in ref.parameters())


def test_config_round_trip():
    cfg = ModelConfig(fc_hidden=(32, 16), dropout=0.0)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_input_norm_removes_window_mean():
    m = GenderNet().eval()
    x = torch.randn(2, 40, 99)
    shift = torch.randn(1, 40, 1) * 5  # a constant per-coefficient offset (gain / channel colouring)
    torch.testing.assert_close(m(x), m(x + shift), rtol=1e-4, atol=1e-4)
