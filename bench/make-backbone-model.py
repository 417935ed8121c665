#!/usr/bin/python3
"""make-backbone-model.py: writes a full-size StageInteractor with RANDOM
weights and one of the published non-ResNet backbones, through the PyTorch
model of tools/train (for benchmarks only; never commit its output):

  x101-dcn  ResNeXt-101 32x4d, DCNv1 in layer2-4 (the dx101 configs)
  swin-s    Swin-S: embed_dims 96, depths 2/2/18/2, heads 3/6/12/24

Both with the 300-query decoder of those configs (4 groups, first-level
points 8 then 4 a stage, 128 output points, 80 classes, 300 detections).

usage: make-backbone-model.py {x101-dcn,swin-s} --out FILE [--seed S]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tools", "train"))

import torch  # noqa: E402

import export as E  # noqa: E402
import model as M  # noqa: E402

BACKBONES = {
    "x101-dcn": {"backbone_type": "ResNeXt", "depth": 101, "groups": 32,
                 "base_width": 4, "dcn_groups": 1,
                 "stage_with_dcn": [False, True, True, True]},
    "swin-s": {"backbone_type": "SwinTransformer", "embed_dims": 96,
               "swin_depths": [2, 2, 18, 2], "swin_heads": [3, 6, 12, 24],
               "window_size": 7, "mlp_ratio": 4},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("backbone", choices=sorted(BACKBONES))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cfg = M.make_config(num_classes=80, num_query=300, base_channels=64,
                        depth=101, content_dim=256, ffn=2048, n_heads=4,
                        num_heads=8, in_points=(8, 4, 4, 4, 4, 4),
                        out_points=128, max_per_img=300)
    cfg.update(BACKBONES[a.backbone])
    torch.manual_seed(a.seed)
    net = M.StageInteractor(cfg)
    M.init_weights(net, seed=a.seed)
    print("%s: %d backbone parameters" %
          (a.backbone, sum(p.numel() for p in net.backbone.parameters())))
    E.export(net.eval(), a.out, ["c%d" % i for i in range(80)], (1333, 800))


if __name__ == "__main__":
    main()
