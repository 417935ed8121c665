# Test fixture reproducing the structure of the official
# configs/stageinteractor/stageinteractor_r101_300_query_crop_mstrain_480-800_3x_coco.py
# (MCG-NJU/StageInteractor @ 477aa15): ResNet-101, 300 queries, 36 epochs.
_base_ = './stageinteractor_r50_300_query_crop_mstrain_480-800_3x_coco.py'

model = dict(pretrained='torchvision://resnet101', backbone=dict(depth=101))
