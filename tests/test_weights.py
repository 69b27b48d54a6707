"""The one strict key/shape check that every weight loader uses."""

import pytest
import torch

from gen1.weights import check_state_dict


def test_accepts_exact_match_and_names_the_first_problem():
    expected = {"a.weight": torch.zeros(2, 3), "b.bias": torch.Size([4])}
    check_state_dict(expected, {"a.weight": torch.ones(2, 3), "b.bias": torch.ones(4)}, "f.safetensors")
    with pytest.raises(ValueError, match=r"f\.safetensors: missing key 'b\.bias' \(expected shape \(4,\)\)"):
        check_state_dict(expected, {"a.weight": torch.ones(2, 3)}, "f.safetensors")
    with pytest.raises(ValueError, match=r"unexpected key 'c' \(and 1 more\)"):
        check_state_dict(expected, {"a.weight": torch.ones(2, 3), "b.bias": torch.ones(4), "c": 1, "d": 2}, "f")
    with pytest.raises(ValueError, match=r"'a\.weight' has shape \(3, 2\), the model expects \(2, 3\); hint"):
        check_state_dict(expected, {"a.weight": torch.ones(3, 2), "b.bias": torch.ones(4)}, "f", hint="; hint")
