"""How much memory a full-size ``harness check`` needs, said before it trains.

Measured, not guessed: one training step's forward of the recipe's real model at a small probe
(``PROBE_CROP`` square, ``PROBE_BATCH`` images) under torch's saved-tensor hooks counts the bytes
autograd keeps for the backward pass. PSPNet is fully convolutional, so what it keeps grows with the
pixels (the pyramid pool's 1/2/3/6 bins are fixed and tiny): per image and pixel, times crop area
times batch, gives the activations at full size. Added to that: what this process holds now
(Python, torch, mmseg, the config) and the parameters three times (weights, gradients, SGD
momentum). The backward pass frees saved tensors as it goes while it makes gradients of the same
sizes, so the saved total is also the order of the peak; ``BACKWARD_MARGIN`` covers those
transient gradients and the allocator's slack (the figures it was checked against: README).
"""
from __future__ import annotations

import resource
from dataclasses import dataclass

PROBE_CROP = 64
PROBE_BATCH = 2
BACKWARD_MARGIN = 1.1  # R50-D8 512x512 batch 16: 18.5 GB counted, 21 GB peak RSS measured


@dataclass(frozen=True)
class MemoryEstimate:
    process_mb: float  # this process before training (peak RSS so far)
    parameters_mb: float  # weights + gradients + momentum
    activations_mb: float  # kept for backward, at the crop and batch
    crop: tuple[int, int]
    batch: int

    @property
    def total_mb(self) -> float:
        return self.process_mb + self.parameters_mb + self.activations_mb

    def line(self) -> str:
        return (f"needs about {self.total_mb / 1024:.1f} GB of memory at crop {self.crop[1]}x{self.crop[0]}, "
                f"batch {self.batch}: {self.activations_mb / 1024:.1f} GB activations kept for backward "
                f"(measured at {PROBE_CROP}x{PROBE_CROP}, batch {PROBE_BATCH}, scaled by pixels x batch) + "
                f"{self.parameters_mb / 1024:.1f} GB weights, gradients and momentum + "
                f"{self.process_mb / 1024:.1f} GB this process")


def saved_bytes_per_pixel(model) -> float:
    """Bytes autograd keeps per image pixel in one training forward of ``model`` (an mmseg
    segmentor, in train mode) at the probe size; each storage counted once."""
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    h = w = PROBE_CROP
    inputs = torch.randn(PROBE_BATCH, 3, h, w)
    samples = []
    for _ in range(PROBE_BATCH):
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), pad_shape=(h, w), ori_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 21, (1, h, w)))
        samples.append(sample)
    storages: dict[int, int] = {}
    # Layers save their weights for backward too: those are counted once, as parameters.
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        losses = model.loss(inputs, samples)
    del losses
    return sum(storages.values()) / (PROBE_BATCH * h * w)


def estimate(model, crop: tuple[int, int], batch: int) -> MemoryEstimate:
    per_pixel = saved_bytes_per_pixel(model)
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    process = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mb = 1024 * 1024
    return MemoryEstimate(
        process_mb=process / mb, parameters_mb=3 * parameters / mb,
        activations_mb=BACKWARD_MARGIN * per_pixel * crop[0] * crop[1] * batch / mb, crop=crop, batch=batch,
    )
