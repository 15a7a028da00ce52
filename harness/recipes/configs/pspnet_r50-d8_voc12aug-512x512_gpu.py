# The stock mmsegmentation setting the seed's GPU-8p row was measured with: PSPNet R50-D8,
# 512x512 crops, VOC12+aug, SyncBN, 4 images per GPU x 8, 20k iterations (from the recipe).
_base_ = ['mmseg::pspnet/pspnet_r50-d8_4xb4-20k_voc12aug-512x512.py']
