"""The training loop's parameter selection."""

import pytest
from torch import nn

from wmtool.training import only_trainable


def test_only_trainable_freezes_the_rest_and_restores_it_after_an_error():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)  # frozen by the caller: stays frozen
    with pytest.raises(RuntimeError, match="inside"):
        with only_trainable(model, model[1]) as chosen:
            assert [id(w) for w in chosen] == [id(w) for w in model[1].parameters()]
            assert not model[0].bias.requires_grad and model[1].weight.requires_grad
            raise RuntimeError("inside")
    assert model[0].bias.requires_grad and not model[0].weight.requires_grad
    with only_trainable(model, None) as chosen:
        assert len(chosen) == 4
