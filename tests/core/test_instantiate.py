"""A component's own setting error comes out of Hydra as its own one-line message."""

from __future__ import annotations

import pytest

from fedcomp.core.instantiate import instantiate_checked


class Picky:
    def __init__(self, size: int = 1) -> None:
        if size < 1:
            raise ValueError(f"thing.size: must be >= 1, got {size}")
        self.size = size


def test_the_constructors_message_is_raised_as_is():
    with pytest.raises(ValueError) as info:
        instantiate_checked({"_target_": f"{__name__}.Picky", "size": 0}, "thing")
    assert str(info.value) == "thing.size: must be >= 1, got 0"


def test_a_target_that_does_not_exist_names_the_key():
    with pytest.raises(ValueError, match=r"^thing\._target_: "):
        instantiate_checked({"_target_": f"{__name__}.Missing"}, "thing")


def test_a_good_config_builds():
    assert instantiate_checked({"_target_": f"{__name__}.Picky", "size": 3}, "thing").size == 3
