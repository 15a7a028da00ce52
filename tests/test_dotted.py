"""The one dotted-key setter behind the recipe's --set and the worker's config overrides."""
from __future__ import annotations

import pytest

from harness.core.dotted import DottedKeyError, set_dotted


def test_sets_nested_values_makes_missing_mappings_and_indexes_lists():
    data = {"train": {"iterations": 10}, "pipeline": [{"type": "A", "scale": (512, 512)}], "empty": None}
    set_dotted(data, "train.iterations", 20)
    set_dotted(data, "model.backbone.depth", 18)
    set_dotted(data, "empty.x", 1)
    set_dotted(data, "pipeline.0.scale", [256, 256])
    assert data["train"] == {"iterations": 20} and data["model"] == {"backbone": {"depth": 18}}
    assert data["empty"] == {"x": 1}
    assert data["pipeline"][0]["scale"] == (256, 256) and type(data["pipeline"][0]["scale"]) is tuple
    set_dotted(data, "train.milestones", [1, 2])  # no tuple before: stays a list
    assert data["train"]["milestones"] == [1, 2]


@pytest.mark.parametrize("dotted", ["train.iterations.x", "pipeline.7.scale", "pipeline.type"])
def test_a_key_through_a_scalar_or_a_missing_index_is_one_error(dotted):
    data = {"train": {"iterations": 10}, "pipeline": [{"type": "A"}]}
    with pytest.raises(DottedKeyError, match=dotted.replace(".", r"\.")):
        set_dotted(data, dotted, 1)


def test_mmengine_config_takes_overrides():
    from mmengine.config import Config

    cfg = Config({"model": {"decode_head": {"dropout_ratio": 0.1}}, "crop": (512, 512)})
    set_dotted(cfg, "model.decode_head.dropout_ratio", 0.0)
    set_dotted(cfg, "crop", [256, 256])
    assert cfg.model.decode_head.dropout_ratio == 0.0 and cfg.crop == (256, 256)
