"""mmengine hooks the harness adds to a run's config (imported through ``custom_imports``)."""
from __future__ import annotations

from mmengine.hooks import Hook
from mmseg.registry import HOOKS  # the runs' default scope is mmseg


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Puts the model's weights in channels_last (NHWC) memory format before training.

    Convolutions with NHWC weights produce NHWC activations, which is what tensor cores want under
    AMP. Runs before the first iteration; mmengine has already moved the model to its device.
    Under DDP the wrapper's gradient buckets were laid out before this, so PyTorch warns about
    bucket strides and loses some overlap; the one-card measurement has no such wrapper.
    """

    priority = "VERY_HIGH"

    def before_train(self, runner) -> None:
        import torch

        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        model.to(memory_format=torch.channels_last)
        runner.logger.info("harness: model converted to channels_last")
