"""The MLflow vis backend the worker streams through (imported through ``custom_imports``).

mmengine's ``MLflowVisBackend`` raises whatever MLflow raises, from inside the logger hook: a
tracking server that goes away would end a training of hours. This one reports the first error
once in the training log and stops streaming; the run goes on, and ``harness export mlflow`` sends
it afterwards.
"""
from __future__ import annotations

from mmengine.logging import MMLogger
from mmengine.visualization import MLflowVisBackend
from mmseg.registry import VISBACKENDS  # the runs' default scope is mmseg


def _guarded(method):
    def call(self, *args, **kwargs):
        if self.stopped:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of the tracker, never the training's
            self.stopped = True
            detail = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            MMLogger.get_current_instance().warning(
                f"harness: MLflow streaming stopped ({exc.__class__.__name__}: {detail}); the training goes on, "
                "`harness export mlflow` can send the run afterwards")
            return None

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


@VISBACKENDS.register_module()
class GuardedMLflowVisBackend(MLflowVisBackend):
    """``MLflowVisBackend`` whose failures stop the stream, not the training."""

    stopped = False

    add_config = _guarded(MLflowVisBackend.add_config)
    add_image = _guarded(MLflowVisBackend.add_image)
    add_scalar = _guarded(MLflowVisBackend.add_scalar)
    add_scalars = _guarded(MLflowVisBackend.add_scalars)

    @_guarded
    def close(self) -> None:
        if not hasattr(self, "cfg"):  # streaming failed before add_config: nothing to attach
            if hasattr(self, "_mlflow"):
                self._mlflow.end_run()
            return
        super().close()
