# Test fixture reproducing the structure of the official
# configs/stageinteractor/stageinteractor_r101_mstrain_480-800_3x_coco.py
# (MCG-NJU/StageInteractor @ 477aa15): ResNet-101 backbone, otherwise the r50 mstrain 3x config.
_base_ = './stageinteractor_r50_mstrain_480-800_3x_coco.py'

model = dict(pretrained='torchvision://resnet101', backbone=dict(depth=101))
