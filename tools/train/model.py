# model.py: PyTorch StageInteractor (ResNet / ResNeXt, optionally with DCNv1
# (model-spec 3.2), + ChannelMapping neck +
# SubInitialQueryGenerator + S StageInteractorHead stages) whose state_dict keys
# are exactly those of docs/model-spec.md section 8, for training and for
# checking the C engine.  Inference follows the spec op by op (sections 3-7).
#
# Dimension legend: B images, N queries, C content dim (= D feature dim),
# G mixing groups, Dg = D/G, P first-level points, K sub-points (8),
# R = P*K sampling points per group, O spatial output points, Sg generated S
# rows, L reused filters, NC classes, H attention heads.
import copy
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------- config --

DEFAULT_IMG_NORM = {
    "mean": [123.675, 116.28, 103.53],
    "std": [58.395, 57.12, 57.375],
    "to_rgb": True,
}


def make_config(num_classes=5, num_query=24, base_channels=16, depth=50,
                content_dim=64, ffn=256, n_heads=4, num_heads=8,
                in_points=(8, 4, 4, 4, 4, 4), out_points=32,
                subbox_poolsize=8, max_per_img=None):
    """Our flat config (what model.py needs).  to_meta_json() turns it into
    the mmdet-like "model" JSON the engine reads."""
    return {
        "num_classes": num_classes,
        "num_query": num_query,
        "base_channels": base_channels,
        "depth": depth,
        "content_dim": content_dim,
        "feedforward_channels": ffn,
        "n_heads": n_heads,
        "num_heads": num_heads,
        "in_points": list(in_points),
        "out_points": out_points,
        "subbox_poolsize": subbox_poolsize,
        "num_stages": len(in_points),
        "reuse_st_id": 2,
        "lim_outpoints_times": 1,
        "max_per_img": max_per_img if max_per_img else num_query,
    }


def config_from_meta(model_json):
    """Flat config from the `model` JSON of a safetensors __metadata__."""
    m = json.loads(model_json) if isinstance(model_json, str) else model_json
    bh = m["roi_head"]["bbox_head"]
    b0 = bh[0]
    bb = m["backbone"]
    assert bb["type"] in ("ResNet", "ResNeXt", "SwinTransformer"), bb["type"]
    dcn = bb.get("dcn") or {}
    for h in bh:
        assert h.get("lim_outpoints_times", 1) == 1
        assert h.get("reuse_st_id", 2) == 2
    base = {
        "num_classes": b0["num_classes"],
        "num_query": m["rpn_head"]["num_query"],
        "base_channels": bb.get("base_channels", 64),
        "depth": bb.get("depth", 0),
        "content_dim": m["rpn_head"]["content_dim"],
        "feedforward_channels": b0["feedforward_channels"],
        "n_heads": b0["n_heads"],
        "num_heads": b0["num_heads"],
        "in_points": [h["in_points"] for h in bh],
        "out_points": b0["out_points"],
        "subbox_poolsize": b0["subbox_poolsize"],
        "num_stages": m["roi_head"]["num_stages"],
        "reuse_st_id": 2,
        "lim_outpoints_times": 1,
        "max_per_img": m["test_cfg"]["rcnn"]["max_per_img"],
    }
    return {
        **base,
        "backbone_type": bb["type"],
        "groups": bb.get("groups", 1) if bb["type"] == "ResNeXt" else 1,
        "base_width": bb.get("base_width", 4),
        "dcn_groups": dcn.get("deform_groups", 1) if dcn else 0,
        "stage_with_dcn": list(bb.get("stage_with_dcn",
                                      [False] * 4)) if dcn else [False] * 4,
        "dcn_fallback": bool(dcn.get("fallback_on_stride", False)),
    } if bb["type"] != "SwinTransformer" else {
        **base, "backbone_type": "SwinTransformer",
        "embed_dims": bb["embed_dims"], "swin_depths": list(bb["depths"]),
        "swin_heads": list(bb["num_heads"]),
        "window_size": bb.get("window_size", 7),
        "mlp_ratio": bb.get("mlp_ratio", 4)}


def backbone_options(cfg):
    """The ResNeXt / DCN options of a flat config (defaults: ResNet)."""
    return {
        "type": cfg.get("backbone_type", "ResNet"),
        "groups": cfg.get("groups", 1),
        "base_width": cfg.get("base_width", 4),
        "dcn_groups": cfg.get("dcn_groups", 0),
        "stage_with_dcn": list(cfg.get("stage_with_dcn", [False] * 4)),
        "dcn_fallback": cfg.get("dcn_fallback", False),
    }


def backbone_channels(cfg):
    """The four backbone outputs' channel counts."""
    if cfg.get("backbone_type") == "SwinTransformer":
        return [cfg["embed_dims"] * 2 ** i for i in range(4)]
    return [cfg["base_channels"] * 4 * 2 ** i for i in range(4)]


def to_meta_json(cfg, template=None):
    """mmdet-style merged `model` dict (as the golden model's metadata) with
    our sizes.  `template` is an existing model dict to copy the structure
    from (the golden one); without it a built-in skeleton is used."""
    C = cfg["content_dim"]
    bc = cfg["base_channels"]
    S = cfg["num_stages"]
    if template is not None:
        m = copy.deepcopy(template)
    else:
        m = _skeleton_meta()
    m["type"] = "SubQueryDeformableRCNN"
    m["pretrained"] = None
    bo = backbone_options(cfg)
    if bo["type"] == "SwinTransformer":
        m["backbone"] = {
            "type": "SwinTransformer", "embed_dims": cfg["embed_dims"],
            "depths": list(cfg["swin_depths"]),
            "num_heads": list(cfg["swin_heads"]),
            "window_size": cfg["window_size"], "mlp_ratio": cfg["mlp_ratio"],
            "qkv_bias": True, "qk_scale": None, "drop_rate": 0.0,
            "attn_drop_rate": 0.0, "drop_path_rate": 0.2, "patch_norm": True,
            "out_indices": [0, 1, 2, 3], "with_cp": False,
            "convert_weights": True}
    else:
        m["backbone"].update({"type": bo["type"], "depth": cfg["depth"],
                              "base_channels": bc, "num_stages": 4,
                              "out_indices": [0, 1, 2, 3],
                              "style": "pytorch", "pretrained": None})
    for key in ("groups", "base_width", "dcn", "stage_with_dcn"):
        m["backbone"].pop(key, None)
    if bo["type"] == "ResNeXt":
        m["backbone"].update({"groups": bo["groups"],
                              "base_width": bo["base_width"]})
    if bo["dcn_groups"]:
        m["backbone"]["dcn"] = {"type": "DCN",
                                "deform_groups": bo["dcn_groups"],
                                "fallback_on_stride": bo["dcn_fallback"]}
        m["backbone"]["stage_with_dcn"] = bo["stage_with_dcn"]
    m["neck"].update({"type": "ChannelMapping",
                      "in_channels": backbone_channels(cfg),
                      "out_channels": C, "num_outs": 4, "start_level": 0})
    m["rpn_head"].update({"type": "SubInitialQueryGenerator",
                          "num_query": cfg["num_query"], "content_dim": C})
    m["roi_head"].update({"type": "StageInteractorDecoder", "num_stages": S,
                          "content_dim": C,
                          "stage_loss_weights": [1] * S,
                          "test_cfg": {"max_per_img": cfg["max_per_img"]}})
    heads = m["roi_head"].get("bbox_head") or []
    proto = heads[0] if heads else _skeleton_head()
    new_heads = []
    for s in range(S):
        h = copy.deepcopy(heads[s] if s < len(heads) else proto)
        h.update({"type": "StageInteractorHead", "stage_idx": s,
                  "stage_type": min(s, 2), "in_points": cfg["in_points"][s],
                  "out_points": cfg["out_points"],
                  "n_heads": cfg["n_heads"], "num_heads": cfg["num_heads"],
                  "content_dim": C, "feat_channels": C,
                  "feedforward_channels": cfg["feedforward_channels"],
                  "num_ffn_fcs": 2, "num_cls_fcs": 1, "num_reg_fcs": 1,
                  "num_classes": cfg["num_classes"],
                  "subbox_poolsize": cfg["subbox_poolsize"],
                  "in_point_sampling_rate": 1, "lim_outpoints_times": 1,
                  "num_queries": cfg["num_query"],
                  "last_in_point_num": (None if s == 0 else
                                        cfg["in_points"][s - 1] *
                                        cfg["subbox_poolsize"]),
                  "targets_candi_ids": [-1] + list(range(1, S - s)),
                  "use_bg_idx_classifier": False})
        h.setdefault("loss_cls", {})["use_sigmoid"] = True
        h.setdefault("ffn_act_cfg", {"type": "ReLU", "inplace": True})
        new_heads.append(h)
    m["roi_head"]["bbox_head"] = new_heads
    m["test_cfg"] = {"rpn": None, "rcnn": {"max_per_img": cfg["max_per_img"]}}
    m["train_cfg"] = None
    return m


def _skeleton_head():
    return {
        "type": "StageInteractorHead", "dropout": 0.0,
        "ffn_act_cfg": {"inplace": True, "type": "ReLU"},
        "loss_bbox": {"loss_weight": 5.0, "type": "WeightedL1Loss"},
        "loss_cls": {"alpha": 0.25, "gamma": 2.0, "loss_weight": 2.0,
                     "type": "FocalLoss", "use_sigmoid": True},
        "loss_iou": {"loss_weight": 2.0, "type": "GIoULoss"},
    }


def _skeleton_meta():
    return {
        "type": "SubQueryDeformableRCNN",
        "backbone": {"type": "ResNet", "depth": 50, "num_stages": 4,
                     "out_indices": [0, 1, 2, 3], "frozen_stages": -1,
                     "norm_cfg": {"type": "BN", "requires_grad": True},
                     "norm_eval": True, "style": "pytorch"},
        "neck": {"type": "ChannelMapping", "add_extra_convs": "on_output"},
        "rpn_head": {"type": "SubInitialQueryGenerator"},
        "roi_head": {"type": "StageInteractorDecoder", "bbox_head": []},
    }


# -------------------------------------------------------------- backbone --


class DeformConv2d(nn.Module):
    """mmcv DeformConv2dPack, DCNv1 (model-spec 3.2): a 3x3, pad 1 conv
    (no bias) sampling its input at positions moved by the offsets of
    conv_offset (3x3, same stride, pad 1, bias; 18 * dg channels: tap k of
    deform group g has dy at 2 (g * 9 + k), dx after it).  Sampling as
    mmcv's deformable_im2col_bilinear, written with gathers."""

    def __init__(self, cin, cout, stride, groups=1, deform_groups=1):
        super().__init__()
        self.stride, self.groups, self.dg = stride, groups, deform_groups
        self.weight = nn.Parameter(torch.empty(cout, cin // groups, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.conv_offset = nn.Conv2d(cin, 18 * deform_groups, 3, stride, 1,
                                     bias=True)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x):
        B, C, H, W = x.shape
        off = self.conv_offset(x)
        Ho, Wo = off.shape[-2:]
        dg = self.dg
        off = off.view(B, dg, 9, 2, Ho, Wo)
        k = torch.arange(9, device=x.device)
        oy = torch.arange(Ho, device=x.device) * self.stride - 1
        ox = torch.arange(Wo, device=x.device) * self.stride - 1
        py = ((oy.view(1, 1, 1, Ho, 1) + (k // 3).view(1, 1, 9, 1, 1))
              .to(x.dtype) + off[:, :, :, 0])
        px = ((ox.view(1, 1, 1, 1, Wo) + (k % 3).view(1, 1, 9, 1, 1))
              .to(x.dtype) + off[:, :, :, 1])
        valid = ((py > -1) & (px > -1) & (py < H) & (px < W)).to(x.dtype)
        hl, wl = torch.floor(py), torch.floor(px)
        lh, lw = py - hl, px - wl
        uh, uw = 1 - lh, 1 - lw
        hl, wl = hl.long(), wl.long()
        xg = x.reshape(B, dg, C // dg, H * W)

        def corner(yy, xx):
            inside = ((yy >= 0) & (yy <= H - 1) & (xx >= 0) & (xx <= W - 1))
            idx = (yy.clamp(0, H - 1) * W + xx.clamp(0, W - 1))
            idx = idx.reshape(B, dg, 1, -1).expand(B, dg, C // dg, -1)
            v = torch.gather(xg, 3, idx).view(B, dg, C // dg, 9, Ho, Wo)
            return v * inside.to(x.dtype).unsqueeze(2)

        def wt(t):
            return (t * valid).unsqueeze(2)

        val = (wt(uh * uw) * corner(hl, wl) + wt(uh * lw) * corner(hl, wl + 1)
               + wt(lh * uw) * corner(hl + 1, wl)
               + wt(lh * lw) * corner(hl + 1, wl + 1))
        G = self.groups
        cols = val.reshape(B, G, (C // G) * 9, Ho * Wo)
        w = self.weight.reshape(G, -1, (C // G) * 9)
        out = torch.einsum("gok,bgkp->bgop", w, cols)
        return out.reshape(B, -1, Ho, Wo)


class Bottleneck(nn.Module):
    """mmdet ResNet / ResNeXt Bottleneck, style='pytorch' (stride on conv2);
    conv2 grouped (ResNeXt) and/or deformable (DCNv1)."""

    def __init__(self, inplanes, planes, stride, downsample, groups=1,
                 base_width=4, base_channels=64, dcn_groups=0):
        super().__init__()
        width = planes if groups == 1 else (
            planes * base_width // base_channels) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        if dcn_groups:
            self.conv2 = DeformConv2d(width, width, stride, groups,
                                      dcn_groups)
        else:
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups,
                                   bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if downsample:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        idt = x if self.downsample is None else self.downsample(x)
        return F.relu(y + idt)


class ResNet(nn.Module):
    """Outputs C2..C5 (strides 4, 8, 16, 32), widths 4*base*2^i.  options:
    backbone_options() (ResNeXt groups / base_width, DCN stages)."""
    BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}

    def __init__(self, depth=50, base_channels=64, options=None):
        super().__init__()
        o = options or backbone_options({})
        self.conv1 = nn.Conv2d(3, base_channels, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        inpl = base_channels
        for i, nb in enumerate(self.BLOCKS[depth]):
            planes = base_channels * 2 ** i
            blocks = []
            for b in range(nb):
                stride = (1 if i == 0 else 2) if b == 0 else 1
                dcn = o["dcn_groups"] if o["stage_with_dcn"][i] and not (
                    o["dcn_fallback"] and stride != 1) else 0
                blocks.append(Bottleneck(inpl, planes, stride, b == 0,
                                         o["groups"], o["base_width"],
                                         base_channels, dcn))
                inpl = planes * 4
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*blocks))

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 3, 2, 1)
        outs = []
        for i in range(4):
            x = getattr(self, "layer%d" % (i + 1))(x)
            outs.append(x)
        return outs


class WindowMSA(nn.Module):
    """Multi-head self-attention inside ws x ws windows with the learned
    relative position bias (model-spec 3.3)."""

    def __init__(self, C, heads, ws):
        super().__init__()
        self.heads, self.ws = heads, ws
        self.scale = (C // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * ws - 1) ** 2, heads))
        i = torch.arange(ws)
        yy, xx = torch.meshgrid(i, i, indexing="ij")
        yy, xx = yy.flatten(), xx.flatten()
        idx = ((yy[:, None] - yy[None, :] + ws - 1) * (2 * ws - 1)
               + (xx[:, None] - xx[None, :] + ws - 1))
        self.register_buffer("relative_position_index", idx)
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x, mask=None):
        """x (B*nW, n, C); mask (nW, n, n) or None."""
        Bw, n, C = x.shape
        hd = C // self.heads
        qkv = self.qkv(x).view(Bw, n, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[
            self.relative_position_index.flatten()].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = (attn.view(Bw // nW, nW, self.heads, n, n)
                    + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.heads,
                                                           n, n)
        o = attn.softmax(-1) @ v
        return self.proj(o.transpose(1, 2).reshape(Bw, n, C))


class ShiftWindowMSA(nn.Module):
    """Zero-pad to whole windows, roll by -shift (odd blocks), attend within
    windows (shifted: regions of the rolled map masked by -100), undo."""

    def __init__(self, C, heads, ws, shift):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.w_msa = WindowMSA(C, heads, ws)

    def forward(self, x, H, W):
        B, L, C = x.shape
        ws, s = self.ws, self.shift
        x = x.view(B, H, W, C)
        Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
        x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
        mask = None
        if s:
            x = torch.roll(x, (-s, -s), (1, 2))
            lab = torch.zeros(Hp, Wp, device=x.device)
            cnt = 0
            for hs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
                for wsl in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
                    lab[hs, wsl] = cnt
                    cnt += 1
            lw = lab.view(Hp // ws, ws, Wp // ws, ws).permute(0, 2, 1, 3)
            lw = lw.reshape(-1, ws * ws)
            mask = (lw[:, None, :] != lw[:, :, None]).to(x.dtype) * -100.0
        win = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
        out = self.w_msa(win.reshape(-1, ws * ws, C), mask)
        out = out.view(B, Hp // ws, Wp // ws, ws, ws, C).permute(0, 1, 3, 2, 4,
                                                                5)
        out = out.reshape(B, Hp, Wp, C)
        if s:
            out = torch.roll(out, (s, s), (1, 2))
        return out[:, :H, :W, :].reshape(B, H * W, C)


class SwinBlock(nn.Module):
    def __init__(self, C, heads, ws, shift, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(C)
        self.attn = ShiftWindowMSA(C, heads, ws, shift)
        self.norm2 = nn.LayerNorm(C)
        self.ffn = nn.Module()
        self.ffn.layers = nn.Sequential(
            nn.Sequential(nn.Linear(C, mlp_ratio * C), nn.GELU()),
            nn.Linear(mlp_ratio * C, C))

    def forward(self, x, H, W):
        x = x + self.attn(self.norm1(x), H, W)
        return x + self.ffn.layers(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 unfold (channel-major: c * 4 + dy * 2 + dx), LN(4C), Linear to
    2C without bias."""

    def __init__(self, C):
        super().__init__()
        self.norm = nn.LayerNorm(4 * C)
        self.reduction = nn.Linear(4 * C, 2 * C, bias=False)

    def forward(self, x, H, W):
        B, L, C = x.shape
        x = x.view(B, H, W, C).permute(0, 3, 1, 2)
        x = F.unfold(x, 2, stride=2).transpose(1, 2)
        return self.reduction(self.norm(x)), H // 2, W // 2


class SwinStage(nn.Module):
    def __init__(self, C, depth, heads, ws, mlp_ratio, downsample):
        super().__init__()
        self.blocks = nn.ModuleList(
            [SwinBlock(C, heads, ws, ws // 2 if j % 2 else 0, mlp_ratio)
             for j in range(depth)])
        self.downsample = PatchMerging(C) if downsample else None


class SwinTransformer(nn.Module):
    """mmdet SwinTransformer at inference (model-spec 3.3): patch embed
    4x4/4 + LN, 4 stages of (shifted) window blocks, patch merging between
    stages; output i = norm{i} of stage i before its merge, NCHW."""

    def __init__(self, embed_dims, depths, heads, ws=7, mlp_ratio=4):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.projection = nn.Conv2d(3, embed_dims, 4, 4)
        self.patch_embed.norm = nn.LayerNorm(embed_dims)
        self.stages = nn.ModuleList(
            [SwinStage(embed_dims * 2 ** i, depths[i], heads[i], ws,
                       mlp_ratio, i < 3) for i in range(4)])
        for i in range(4):
            setattr(self, "norm%d" % i, nn.LayerNorm(embed_dims * 2 ** i))

    def forward(self, x):
        x = self.patch_embed.projection(x)
        B, C, H, W = x.shape
        x = self.patch_embed.norm(x.flatten(2).transpose(1, 2))
        outs = []
        for i, st in enumerate(self.stages):
            for blk in st.blocks:
                x = blk(x, H, W)
            o = getattr(self, "norm%d" % i)(x)
            outs.append(o.view(B, H, W, -1).permute(0, 3, 1, 2).contiguous())
            if st.downsample is not None:
                x, H, W = st.downsample(x, H, W)
        return outs


class ConvModule(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=True)


class ChannelMapping(nn.Module):
    """Per level 1x1 conv -> C, then ONE shared GroupNorm(32, C)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.lateral_convs = nn.ModuleList(
            [ConvModule(c, out_channels) for c in in_channels])
        self.gn_out = nn.GroupNorm(32, out_channels)

    def forward(self, feats):
        return [self.gn_out(lc.conv(f))
                for lc, f in zip(self.lateral_convs, feats)]


class SubInitialQueryGenerator(nn.Module):
    def __init__(self, num_query, content_dim):
        super().__init__()
        self.content_dim = content_dim
        self.init_content_features = nn.Embedding(num_query, content_dim)
        self.register_buffer("init_proposal_bboxes",
                             torch.tensor([[0.5, 0.5, 1.0, 1.0]]).repeat(
                                 num_query, 1))

    def forward(self, img_wh):
        """img_wh: (B, 2) unpadded image sizes -> q0 (B, N, C), xyzr0 (B, N, 4)."""
        B = img_wh.shape[0]
        bb = self.init_proposal_bboxes  # (N, 4) cx cy w h normalised
        W = img_wh[:, 0:1]
        H = img_wh[:, 1:2]  # (B, 1)
        cx, cy, w, h = bb[None, :, 0], bb[None, :, 1], bb[None, :, 2], bb[None, :, 3]
        x1 = (cx - 0.5 * w) * W
        y1 = (cy - 0.5 * h) * H
        x2 = (cx + 0.5 * w) * W
        y2 = (cy + 0.5 * h) * H
        x = 0.5 * (x1 + x2)
        y = 0.5 * (y1 + y2)
        bw = x2 - x1
        bh = y2 - y1
        z = torch.log2(torch.sqrt(bw * bh))
        r = torch.log2(bh / bw)
        xyzr = torch.stack([x, y, z, r], -1)  # (B, N, 4)
        q = F.layer_norm(self.init_content_features.weight,
                         [self.content_dim])
        return q[None].expand(B, -1, -1), xyzr


# ------------------------------------------------------------ box helpers --


def decode_box(xyzr):
    """(..., 4) x y z r -> (..., 4) x1 y1 x2 y2 (spec section 5)."""
    x, y, z, r = xyzr.unbind(-1)
    sc = torch.exp2(z)
    w = sc * torch.exp2(r * -0.5)
    h = sc * torch.exp2(r * 0.5)
    return torch.stack([x - w * 0.5, y - h * 0.5, x + w * 0.5, y + h * 0.5], -1)


def refine_xyzr(xyzr, delta):
    x, y, z, r = xyzr.unbind(-1)
    d0, d1, d2, d3 = delta.unbind(-1)
    return torch.stack([x + d0 * torch.exp2(z - 0.5 * r),
                        y + d1 * torch.exp2(z + 0.5 * r),
                        z + d2, r + d3], -1)


def position_embedding(xyzr, C):
    """(B, N, 4) -> (B, N, C): 4 blocks of C/4, sin/cos interleaved."""
    NF = C // 4
    dim_t = torch.arange(NF, dtype=torch.float32, device=xyzr.device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / NF)
    scale = torch.tensor([1 / 1000.0, 1 / 1000.0, 1.0, 1.0],
                         dtype=xyzr.dtype, device=xyzr.device)
    v = torch.cat([xyzr[..., 0:2] / 1000.0, xyzr[..., 2:4]], -1)
    del scale
    t = v[..., None] / dim_t.to(xyzr.dtype)  # (B, N, 4, NF)
    pe = torch.stack([t[..., 0::2].sin(), t[..., 1::2].cos()], -1)
    return pe.flatten(2)


def iof_bias(xyxy):
    """(B, N, 4) -> (B, N, N): log(overlap / area_i + 1e-7)."""
    x1, y1, x2, y2 = xyxy.unbind(-1)
    ow = (torch.min(x2[:, :, None], x2[:, None, :]) -
          torch.max(x1[:, :, None], x1[:, None, :])).clamp(min=0)
    oh = (torch.min(y2[:, :, None], y2[:, None, :]) -
          torch.max(y1[:, :, None], y1[:, None, :])).clamp(min=0)
    overlap = ow * oh
    area = ((x2 - x1) * (y2 - y1)).clamp(min=1e-6)
    return torch.log(overlap / area[:, :, None] + 1e-7)


# ------------------------------------------------------------ head parts --


class MHA(nn.Module):
    """Holds nn.MultiheadAttention (for its parameter names); the forward is
    written out so the float mask and scaling follow spec 6.4 exactly."""

    def __init__(self, C, H):
        super().__init__()
        self.attn = nn.MultiheadAttention(C, H, dropout=0.0)
        self.H = H

    def forward(self, a, bias):
        """a (B, N, C), bias (B, H, N, N) -> (B, N, C)"""
        B, N, C = a.shape
        H = self.H
        hd = C // H
        qkv = F.linear(a, self.attn.in_proj_weight, self.attn.in_proj_bias)
        q, k, v = qkv.split(C, -1)
        q = q.view(B, N, H, hd).transpose(1, 2) / math.sqrt(hd)
        k = k.view(B, N, H, hd).transpose(1, 2)
        v = v.view(B, N, H, hd).transpose(1, 2)
        logits = q @ k.transpose(-1, -2) + bias  # (B, H, N, N)
        o = logits.softmax(-1) @ v  # (B, H, N, hd)
        o = o.transpose(1, 2).reshape(B, N, C)
        return self.attn.out_proj(o)


class FFN(nn.Module):
    def __init__(self, C, Fd):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(C, Fd), nn.ReLU(inplace=True),
                          nn.Dropout(0.0)),
            nn.Linear(Fd, C), nn.Dropout(0.0))

    def forward(self, x):
        return x + self.layers(x)


class FeatExtractor(nn.Module):
    """Two-level point generator: gen_one_d (G*P*3), gen_double_d (K*3)."""

    def __init__(self, C, G, P, K):
        super().__init__()
        self.G, self.P, self.K = G, P, K
        self.gen_one_d = nn.Sequential(nn.Linear(C, 3 * G * P))
        self.gen_double_d = nn.Sequential(nn.Linear(C, 3 * K))

    def points(self, q1, xyzr):
        """-> X, Y, Z each (B, N, G, P, K)."""
        B, N, _ = q1.shape
        G, P, K = self.G, self.P, self.K
        A1 = self.gen_one_d(q1).view(B, N, G, P, 1, 3)
        A2 = self.gen_double_d(q1).view(B, N, 1, 1, K, 3)
        x, y, z, r = [t.view(B, N, 1, 1, 1) for t in xyzr.unbind(-1)]
        ez = torch.exp2(A1[..., 2])
        X = x + torch.exp2(z - 0.5 * r) * (A1[..., 0] + ez * A2[..., 0])
        Y = y + torch.exp2(z + 0.5 * r) * (A1[..., 1] + ez * A2[..., 1])
        Z = (z + A1[..., 2]) + A2[..., 2]
        return X, Y, Z


def sample_features(feats, strides, X, Y, Z, G):
    """feats: list of (B, D, H_l, W_l); X, Y, Z (B, N, G, P, K)
    -> X0 (B, N, G, R, Dg), R = P*K, row r = p*K + k."""
    B, N, _, P, K = X.shape
    R = P * K
    D = feats[0].shape[1]
    Dg = D // G
    lv = torch.arange(len(feats), dtype=X.dtype, device=X.device)
    d = (Z[..., None] - 3) - lv  # (B, N, G, P, K, L)
    w = (-(d * d / 2).abs()).softmax(-1)
    out = None
    # grid per (b, g): (B*G, N, R, 2)
    Xg = X.permute(0, 2, 1, 3, 4).reshape(B * G, N, R)
    Yg = Y.permute(0, 2, 1, 3, 4).reshape(B * G, N, R)
    wg = w.permute(0, 2, 1, 3, 4, 5).reshape(B * G, 1, N, R, len(feats))
    for l, (f, s) in enumerate(zip(feats, strides)):
        Hl, Wl = f.shape[-2:]
        gx = Xg / (Wl * s) * 2 - 1
        gy = Yg / (Hl * s) * 2 - 1
        grid = torch.stack([gx, gy], -1)
        fg = f.reshape(B * G, Dg, Hl, Wl)
        v = F.grid_sample(fg, grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)  # (B*G, Dg, N, R)
        v = v * wg[..., l]
        out = v if out is None else out + v
    return out.view(B, G, Dg, N, R).permute(0, 3, 1, 4, 2).contiguous()


def ln2d(x):
    """LayerNorm without affine over the last two dims together."""
    return F.layer_norm(x, x.shape[-2:])


class CascadeDynamicMixing(nn.Module):
    def __init__(self, s, C, G, P, K, O, reuse_st=2, lim=1):
        super().__init__()
        self.s, self.C, self.G, self.P, self.K, self.O = s, C, G, P, K, O
        self.Dg = Dg = C // G
        self.R = R = P * K
        self.reuse = s >= reuse_st
        self.Sg = O if not self.reuse else O // (lim + 1)
        self.L = max(0, s - reuse_st + 1)
        O_tot = O if not self.reuse else self.Sg * min(s, lim + 1)
        assert O_tot == O
        self.parameter_generator = nn.Linear(C, G * (Dg * Dg + self.Sg * R))
        self.mix_bias = nn.Linear(C, G * (Dg + O))
        self.Wv = nn.Linear(O * C, C)
        self.Wv_layer_norm = nn.LayerNorm(C)
        if self.reuse:
            L = self.L
            self.subbox_local_list = nn.ModuleList(
                [nn.Linear(K * Dg, K * Dg) for _ in range(L)])
            self.axis_atten_list = nn.ModuleList(
                [nn.Linear(P * Dg, P * Dg) for _ in range(L)])
            # no effect at inference (softmax over a size-1 axis, spec 6.6)
            self.subbox_score_list = nn.ModuleList(
                [nn.Linear(C, G * P * K) for _ in range(L)])
            self.M_score_list = nn.Linear(C, G * Dg * 2 * L)
            self.M_score_list_mix_bias = nn.Linear(C, G * Dg * L)
            self.S_score_list = nn.Linear(C, G * self.Sg * lim)
            self.S_score_list2 = nn.Linear(C, G * R * lim)

    def forward(self, X0, q1, bank, dbg=None):
        """X0 (B, N, G, R, Dg), q1 (B, N, C), bank list of (M, S)
        -> q2 (B, N, C), new bank."""
        B, N, G, R, Dg = X0.shape
        Sg, O, P, K = self.Sg, self.O, self.P, self.K
        PG = self.parameter_generator(q1).view(B, N, G, Dg * Dg + Sg * R)
        Mnew = PG[..., :Dg * Dg].reshape(B, N, G, Dg, Dg)
        Sgen = PG[..., Dg * Dg:].reshape(B, N, G, Sg, R)
        MB = self.mix_bias(q1).view(B, N, G, Dg + O)
        bM = MB[..., :Dg]
        bS = MB[..., Dg:]
        if dbg is not None:
            dbg["dyn_M"] = Mnew.reshape(B * N * G, Dg, Dg)
        Y = F.relu(ln2d(X0 @ Mnew + bM[..., None, :]))  # (B, N, G, R, Dg)
        if not self.reuse:
            Sfin = Sgen
        else:
            L = self.L
            assert len(bank) == L, (len(bank), L)
            MS = torch.sigmoid(self.M_score_list(q1)).view(B, N, G, Dg, 2, L)
            MMB = self.M_score_list_mix_bias(q1).view(B, N, G, L, Dg)
            beta = torch.sigmoid(self.S_score_list(q1)).view(B, N, G, Sg)
            gamma = torch.sigmoid(self.S_score_list2(q1)).view(B, N, G, R)
            Res = X0
            for m in range(L):
                Yp = Y.view(B, N, G, P, K, Dg)
                v = Yp.transpose(3, 4).reshape(B, N, G, K, P * Dg)
                Ax = self.axis_atten_list[m](v).view(B, N, G, K, P, Dg)
                Ax = Ax.transpose(3, 4).reshape(B, N, G, R, Dg)
                u = Yp.reshape(B, N, G, P, K * Dg)
                Lc = self.subbox_local_list[m](u).view(B, N, G, R, Dg)
                U = (Lc + Ax) + Res
                Res = U
                colg = MS[..., 0, m]  # (B, N, G, Dg) output channels
                rowg = MS[..., 1, m]  # input channels
                T = bank[m][0] * rowg[..., :, None] + Mnew * (1 - rowg[..., :, None])
                Mmix = T * colg[..., None, :] + Mnew * (1 - colg[..., None, :])
                Y = F.relu(ln2d(U @ Mmix + MMB[..., m, None, :]))
            Sold = bank[L - 1][1][..., :Sg, :]
            T2 = Sold * beta[..., None] + Sgen * (1 - beta[..., None])
            Smix = T2 * gamma[..., None, :] + Sgen * (1 - gamma[..., None, :])
            Sfin = torch.cat([Sgen, Smix], 3)  # (B, N, G, O, R)
        Zm = F.relu(ln2d(Sfin @ Y + bS[..., None]))  # (B, N, G, O, Dg)
        q2 = self.Wv_layer_norm(q1 + self.Wv(Zm.reshape(B, N, G * O * Dg)))
        if self.reuse:
            bank = bank + [(Mnew, Sfin)]
        else:
            bank = [(Mnew, Sfin)]
        return q2, bank


class StageInteractorHead(nn.Module):
    def __init__(self, s, cfg):
        super().__init__()
        C = cfg["content_dim"]
        G = cfg["n_heads"]
        P = cfg["in_points"][s]
        K = cfg["subbox_poolsize"]
        O = cfg["out_points"]
        H = cfg["num_heads"]
        NC = cfg["num_classes"]
        self.C, self.G, self.H, self.s = C, G, H, s
        self.attention = MHA(C, H)
        self.attention_norm = nn.LayerNorm(C)
        self.iof_tau = nn.Parameter(torch.ones(H))
        self.feat_extractor = FeatExtractor(C, G, P, K)
        self.dynamic_conv = CascadeDynamicMixing(s, C, G, P, K, O)
        self.ffn = FFN(C, cfg["feedforward_channels"])
        self.ffn_norm = nn.LayerNorm(C)
        self.cls_fcs = nn.Sequential(nn.Linear(C, C), nn.LayerNorm(C),
                                     nn.ReLU(inplace=True))
        self.reg_fcs = nn.Sequential(nn.Linear(C, C), nn.LayerNorm(C),
                                     nn.ReLU(inplace=True))
        self.fc_cls = nn.Linear(C, NC)
        self.fc_reg = nn.Linear(C, 4)
        # training statistic of the official code, unused: kept for the keys
        self.iou_snyc_statistics = nn.BatchNorm1d(1, affine=False)

    def forward(self, feats, strides, xyzr, q, bank, dbg=None):
        """-> cls (B, N, NC), delta (B, N, 4), q3 (B, N, C), bank"""
        B, N, C = q.shape
        pe = position_embedding(xyzr, C)
        bias = iof_bias(decode_box(xyzr))[:, None] * self.iof_tau.view(
            1, self.H, 1, 1)
        a = q + pe
        q1 = self.attention_norm(a + self.attention(a, bias))
        X, Y, Z = self.feat_extractor.points(q1, xyzr)
        X0 = sample_features(feats, strides, X, Y, Z, self.G)
        if dbg is not None:
            dbg["attn_out"] = q1
            P, K = X.shape[3], X.shape[4]
            xy = torch.stack([X, Y], -1).permute(0, 2, 1, 3, 4, 5)
            dbg["sample_xy"] = xy.reshape(B * self.G, N * P, K, 2)
            dbg["sample_z"] = Z.permute(0, 2, 1, 3, 4).reshape(
                B * self.G, N * P, K, 1)
            dbg["sampled_feats"] = X0
        q2, bank = self.dynamic_conv(X0, q1, bank, dbg)
        q3 = self.ffn_norm(self.ffn(q2))
        cls = self.fc_cls(self.cls_fcs(q3))
        delta = self.fc_reg(self.reg_fcs(q3))
        if dbg is not None:
            dbg["mixer_out"] = q2
        return cls, delta, q3, bank


class RoIHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.bbox_head = nn.ModuleList(
            [StageInteractorHead(s, cfg) for s in range(cfg["num_stages"])])


# ----------------------------------------------------------------- model --


class StageInteractor(nn.Module):
    strides = (4, 8, 16, 32)

    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        bc = cfg["base_channels"]
        if cfg.get("backbone_type") == "SwinTransformer":
            self.backbone = SwinTransformer(
                cfg["embed_dims"], cfg["swin_depths"], cfg["swin_heads"],
                cfg["window_size"], cfg["mlp_ratio"])
        else:
            self.backbone = ResNet(cfg["depth"], bc, backbone_options(cfg))
        self.neck = ChannelMapping(backbone_channels(cfg), cfg["content_dim"])
        self.rpn_head = SubInitialQueryGenerator(cfg["num_query"],
                                                 cfg["content_dim"])
        self.roi_head = RoIHead(cfg)

    def forward(self, img, img_wh, dump=None, detach_boxes=False):
        """img (B, 3, Hp, Wp) normalised, img_wh (B, 2) unpadded resized size.
        Returns per-stage lists: cls logits (B, N, NC), xyzr (B, N, 4).
        dump: dict filled with the golden io tensor names."""
        c = self.backbone(img)
        f = self.neck(c)
        q, xyzr = self.rpn_head(img_wh)
        if dump is not None:
            dump["input"] = img
            for i in range(4):
                dump["backbone.%d" % i] = c[i]
                dump["neck.%d" % i] = f[i]
            dump["init.content"] = q
            dump["init.xyzr"] = xyzr
            dump["init.xyxy"] = decode_box(xyzr)
        bank = []
        cls_all, xyzr_all = [], []
        for s, head in enumerate(self.roi_head.bbox_head):
            dbg = {} if dump is not None else None
            cls, delta, q, bank = head(f, self.strides, xyzr, q, bank, dbg)
            new_xyzr = refine_xyzr(xyzr, delta)
            cls_all.append(cls)
            xyzr_all.append(new_xyzr)
            xyzr = new_xyzr.detach() if detach_boxes else new_xyzr
            if dump is not None:
                for k, v in dbg.items():
                    dump["stage%d.%s" % (s, k)] = v
                dump["stage%d.content" % s] = q
                dump["stage%d.cls_logits" % s] = cls
                dump["stage%d.box_delta" % s] = delta
                dump["stage%d.xyzr" % s] = new_xyzr
                dump["stage%d.xyxy" % s] = decode_box(new_xyzr)
        return cls_all, xyzr_all

    @torch.no_grad()
    def detect(self, img, img_wh, scale_factor=None, k=None):
        """Official post-processing for B = 1: top-k over sigmoid(N*NC).
        Returns boxes (k, 4) (divided by scale_factor (4,) if given),
        scores (k), labels (k), query index (k), sorted by score desc then
        flat index asc."""
        cls_all, xyzr_all = self.forward(img, img_wh)
        cls = cls_all[-1][0]
        N, NC = cls.shape
        k = k or self.cfg["max_per_img"]
        scores = torch.sigmoid(cls).flatten()
        vals, idx = scores.topk(k)
        # stable order: score desc, then flat index asc
        order = sorted(range(k), key=lambda i: (-float(vals[i]), int(idx[i])))
        order = torch.tensor(order, dtype=torch.long, device=vals.device)
        vals, idx = vals[order], idx[order]
        labels = idx % NC
        qi = torch.div(idx, NC, rounding_mode="floor")
        boxes = decode_box(xyzr_all[-1][0])[qi]
        if scale_factor is not None:
            boxes = boxes / scale_factor
        return boxes, vals, labels, qi


def init_weights(model, prior_prob=0.01, seed=0):
    """Training initialisation (AdaMixer / supplement J): xavier for the
    decoder Linears, zero weights for the filter generators and the point
    generators, point biases uniform, focal-loss prior on fc_cls, zero
    regression, kaiming for convs, zero-init of the last BN of each block."""
    g = torch.Generator().manual_seed(seed)
    for m in model.backbone.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out",
                                    nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.backbone.modules():
        if isinstance(m, Bottleneck):
            nn.init.zeros_(m.bn3.weight)
    for lc in model.neck.lateral_convs:
        nn.init.xavier_uniform_(lc.conv.weight)
        nn.init.zeros_(lc.conv.bias)
    nn.init.normal_(model.rpn_head.init_content_features.weight, 0, 1)
    bias_cls = -math.log((1 - prior_prob) / prior_prob)
    for head in model.roi_head.bbox_head:
        for m in head.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        a = head.attention.attn
        nn.init.xavier_uniform_(a.in_proj_weight)
        nn.init.zeros_(a.in_proj_bias)
        nn.init.constant_(head.fc_cls.bias, bias_cls)
        nn.init.zeros_(head.fc_reg.weight)
        nn.init.zeros_(head.fc_reg.bias)
        nn.init.uniform_(head.iof_tau, 0.0, 4.0)
        fe = head.feat_extractor
        G, P, K = fe.G, fe.P, fe.K
        nn.init.zeros_(fe.gen_one_d[0].weight)
        nn.init.zeros_(fe.gen_double_d[0].weight)
        with torch.no_grad():
            b1 = fe.gen_one_d[0].bias.view(G, P, 3)
            b1[..., :2].uniform_(-0.5, 0.5)
            b1[..., 2].zero_()
            b2 = fe.gen_double_d[0].bias.view(K, 3)
            lim = 0.5 / math.sqrt(2)
            b2[..., :2].uniform_(-lim, lim)
            b2[..., 2].zero_()
        dc = head.dynamic_conv
        nn.init.zeros_(dc.parameter_generator.weight)
        # the generated filters start as a fixed random filter (the bias)
        bound = 1.0 / math.sqrt(dc.C)
        nn.init.uniform_(dc.parameter_generator.bias, -bound, bound)
        if dc.reuse:
            nn.init.zeros_(dc.M_score_list.weight)
            nn.init.zeros_(dc.S_score_list.weight)
            nn.init.zeros_(dc.S_score_list2.weight)
    del g


def freeze_unused(model):
    """The subbox_score_list Linears have no effect on the output."""
    for head in model.roi_head.bbox_head:
        dc = head.dynamic_conv
        if dc.reuse:
            for p in dc.subbox_score_list.parameters():
                p.requires_grad_(False)
