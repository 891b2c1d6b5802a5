import itertools

import pytest
import torch

from rnnpipe.models import RecurrentEncoder
from rnnpipe.pipelines.forecast.model import Forecaster


@pytest.mark.parametrize(
    "cell, bidirectional, pooling",
    list(itertools.product(["rnn", "lstm", "gru"], [False, True], ["last", "mean", "max", "attention"])),
)
def test_encoder_shapes(cell, bidirectional, pooling):
    enc = RecurrentEncoder(
        3, cell=cell, hidden_size=8, num_layers=2, dropout=0.1, bidirectional=bidirectional, pooling=pooling
    )
    out = enc(torch.randn(5, 7, 3))
    assert out.shape == (5, 8 * (2 if bidirectional else 1))
    lengths = torch.tensor([7, 3, 5, 1, 2])
    assert enc(torch.randn(5, 7, 3), lengths).shape == out.shape


def test_attention_weights_sum_to_one_and_ignore_padding():
    enc = RecurrentEncoder(2, hidden_size=6, pooling="attention")
    enc(torch.randn(4, 9, 2), torch.tensor([9, 4, 2, 6]))
    w = enc.last_attention
    assert w.shape == (4, 9)
    torch.testing.assert_close(w.sum(1), torch.ones(4))
    assert (w[1, 4:] == 0).all() and (w[2, 2:] == 0).all()


def test_last_pooling_uses_the_last_valid_step():
    torch.manual_seed(0)
    enc = RecurrentEncoder(2, cell="gru", hidden_size=4)
    x = torch.randn(1, 6, 2)
    padded = torch.cat([x[:, :3], torch.full((1, 3, 2), 99.0)], dim=1)
    torch.testing.assert_close(enc(padded, torch.tensor([3])), enc(x[:, :3]))


def test_untrained_forecaster_predicts_no_change():
    model = Forecaster(3, horizon=4, hidden_size=8)
    out = model(torch.randn(2, 10, 3))
    assert out.shape == (2, 4) and (out == 0).all()
