# Test fixture: the golden `tiny` model's config (shared/golden/tiny/
# case.json "config_edits") written the way a user would: inherit the
# official r50 1x config and override sizes.  Lists (bbox_head, the test
# pipeline) replace the base ones, so they are written out in full.
_base_ = '../stageinteractor/stageinteractor_r50_1x_coco.py'

num_stages = 6
num_proposals = 20
QUERY_DIM = 64
FF_DIM = 256
in_points_list = [8, 4, 4, 4, 4, 4]
last_in_points = [None, 64, 32, 32, 32, 32]

tiny_heads = [
    dict(
        type='StageInteractorHead',
        num_classes=80,
        num_ffn_fcs=2,
        num_heads=8,
        num_cls_fcs=1,
        num_reg_fcs=1,
        feedforward_channels=FF_DIM,
        content_dim=QUERY_DIM,
        feat_channels=QUERY_DIM,
        dropout=0.0,
        in_points=in_points_list[s],
        out_points=64,
        n_heads=4,
        ffn_act_cfg=dict(type='ReLU', inplace=True),
        num_queries=num_proposals,
        num_interact_heads=8,
        num_interact_channel_groups=4,
        N_scale=4,
        anchor_point_num=8,
        anchor_channel=QUERY_DIM // 4,
        roi_inpoint_h=7,
        roi_inpoint_w=7,
        in_point_sampling_rate=1,
        subbox_poolsize=8,
        stage_type=[0, 1, 2, 2, 2, 2][s],
        use_bg_idx_classifier=False,
        loss_bbox=dict(type='WeightedL1Loss', loss_weight=5.0),
        loss_iou=dict(type='SoftIou', loss_weight=2.0),
        iou_eval_eta=0.5,
        use_soft_iou=False,
        use_topk_labels=False,
        use_thres_filter=True,
        use_iof=False,
        use_hard_label=True,
        soft2hard_label=True,
        targets_candi_ids=[-1] + list(range(1, num_stages - s)),
        stage_idx=s,
        use_from_gt_perspective=True,
        progress_filter=True,
        use_static_128=True,
        last_in_point_num=last_in_points[s],
        lim_outpoints_times=1,
        use_axis_atten=True,
        loss_cls=dict(
            type='BoundAlphaQualityFocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            alpha_bgfg2fg=0.25,
            loss_weight=2.0),
        ori_focal_loss=False,
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            clip_border=False,
            target_means=[0., 0., 0., 0.],
            target_stds=[0.5, 0.5, 1., 1.])) for s in range(num_stages)
]

model = dict(
    pretrained=None,
    backbone=dict(base_channels=16),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=QUERY_DIM),
    rpn_head=dict(
        num_query=num_proposals,
        content_dim=QUERY_DIM,
        anchor_channel=QUERY_DIM // 4),
    roi_head=dict(content_dim=QUERY_DIM, bbox_head=tiny_heads),
    train_cfg=None,
    test_cfg=dict(_delete_=True, rpn=None,
                  rcnn=dict(max_per_img=num_proposals)))

img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=(150, 90),
        flip=False,
        transforms=[
            dict(type='Resize', keep_ratio=True),
            dict(type='RandomFlip'),
            dict(type='Normalize', **img_norm_cfg),
            dict(type='Pad', size_divisor=32),
            dict(type='ImageToTensor', keys=['img']),
            dict(type='Collect', keys=['img']),
        ])
]
data = dict(test=dict(pipeline=test_pipeline), val=dict(pipeline=test_pipeline))
