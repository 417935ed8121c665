# Test fixture reproducing the structure of the official
# configs/stageinteractor/stageinteractor_dx101_300_query_crop_mstrain_480-800_3x_coco.py
# (MCG-NJU/StageInteractor @ 477aa15): ResNeXt-101 32x4d with DCN in stages 2-4
# (merged into the inherited ResNet backbone dict), 300 queries, 36 epochs.
_base_ = './stageinteractor_r50_300_query_crop_mstrain_480-800_3x_coco.py'

model = dict(
    pretrained='open-mmlab://resnext101_32x4d',
    backbone=dict(
        type='ResNeXt',
        depth=101,
        groups=32,
        base_width=4,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        style='pytorch',
        dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True)))
