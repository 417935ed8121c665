# Test fixture reproducing the structure of the official
# configs/stageinteractor/stageinteractor_r50_300_query_crop_mstrain_480-800_1x_coco.py
# (MCG-NJU/StageInteractor @ 477aa15): 300 queries, crop augmentation.  Like the official file it inherits
# ./lobster_r50_mstrain_480-800_1x_coco.py, which the official repository does
# not contain: loading this config must fail and say so.
_base_ = './lobster_r50_mstrain_480-800_1x_coco.py'
num_query = 300
model = dict(
    rpn_head=dict(num_query=num_query),
    test_cfg=dict(
        _delete_=True, rpn=None, rcnn=dict(max_per_img=num_query)))
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)

# DETR-style augmentation: either a multi-scale resize, or resize + random
# crop + multi-scale resize.
_short_sides = [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(
        type='AutoAugment',
        policies=[[
            dict(
                type='Resize',
                img_scale=[(s, 1333) for s in _short_sides],
                multiscale_mode='value',
                keep_ratio=True)
        ], [
            dict(
                type='Resize',
                img_scale=[(400, 1333), (500, 1333), (600, 1333)],
                multiscale_mode='value',
                keep_ratio=True),
            dict(
                type='RandomCrop',
                crop_type='absolute_range',
                crop_size=(384, 600),
                allow_negative_crop=True),
            dict(
                type='Resize',
                img_scale=[(s, 1333) for s in _short_sides],
                multiscale_mode='value',
                override=True,
                keep_ratio=True)
        ]]),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels'])
]
data = dict(train=dict(pipeline=train_pipeline))
