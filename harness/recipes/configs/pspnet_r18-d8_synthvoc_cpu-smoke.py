# Smoke-test config: the stock PSPNet VOC12+aug config, shrunk so that a 2-core CPU learns the
# synthetic VOC-format set in a few minutes. Same model family (PSPNet, ResNetV1c-D8 backbone,
# PPM head, FCN auxiliary head), same dataset classes and layout; smaller backbone and crop.
_base_ = ['mmseg::pspnet/pspnet_r50-d8_4xb4-20k_voc12aug-512x512.py']

crop_size = (96, 96)
image_scale = (160, 120)  # the synthetic images' size
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    # The stock open-mmlab://resnet50_v1c weights need the internet; the smoke run trains from scratch.
    pretrained=None,
    backbone=dict(depth=18, norm_cfg=norm_cfg, init_cfg=None),
    decode_head=dict(in_channels=512, channels=128, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=256, channels=64, norm_cfg=norm_cfg))

# No PhotoMetricDistortion: the synthetic classes are colour cues, which it scrambles.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=image_scale, ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
dataset_type = 'PascalVOCDataset'
data_root = 'data/VOCdevkit/VOC2012'  # replaced by the harness with the recipe's dataset
train_dataloader = dict(
    dataset=dict(
        type='ConcatDataset',
        datasets=[
            dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
                 ann_file='ImageSets/Segmentation/train.txt', pipeline=train_pipeline),
            dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
                 ann_file='ImageSets/Segmentation/aug.txt', pipeline=train_pipeline),
        ]))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# Too few images per class for SegVisualizationHook to matter; it only costs time.
default_hooks = dict(
    visualization=dict(type='SegVisualizationHook', draw=False),
    # Two, not one: mmengine deletes the oldest checkpoint *before* writing the new one, so with
    # one kept a run killed while saving would be left with none to resume from.
    checkpoint=dict(max_keep_ckpts=2))
