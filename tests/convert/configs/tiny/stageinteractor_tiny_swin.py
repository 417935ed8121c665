# Test fixture: the tiny config with a small Swin backbone swapped in the
# way the official swin_s config does it (backbone dict with _delete_, new
# neck in_channels).  It converts, and the engine runs the result.
_base_ = './stageinteractor_tiny_r50.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        embed_dims=16,
        depths=[2, 1, 1, 1],
        num_heads=[1, 2, 2, 4],
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        qk_scale=None,
        patch_norm=True,
        out_indices=(0, 1, 2, 3),
        convert_weights=True),
    neck=dict(in_channels=[16, 32, 64, 128]))
