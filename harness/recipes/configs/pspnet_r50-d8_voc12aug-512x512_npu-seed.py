# The Ascend ModelZoo PSPNet setting on mmseg 1.x: the stock R50-D8 512x512 VOC12+aug config with
# the seed's changes that live in the config (batch, iterations, BN, AMP and the distributed backend
# come from the recipe and the NPU backend):
# - SGD lr 0.01, momentum 0.9, weight decay 5e-4, poly power 0.9 to 1e-4 (as stock);
# - the test pipeline changed to long edge 512 (stock tests at (2048, 512)), so the mIoU is not
#   strictly comparable with mmsegmentation's 76.78. The seed also padded to 512x512; that was
#   0.10's batching, and mmseg 1.x's whole-image inference predicts at the resized size, so the
#   pad is left out (it would only add ignored pixels).
_base_ = ['mmseg::pspnet/pspnet_r50-d8_4xb4-20k_voc12aug-512x512.py']

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 512), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
