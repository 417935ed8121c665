# losses.py: training targets and losses of the trainer: box utilities,
# Hungarian matching (focal + L1 + GIoU costs, scipy linear_sum_assignment),
# the cross-stage label assignment (gather the one-to-one matches of the
# current and all later stages, keep those whose IoU with the current stage's
# box passes a threshold) and the per-stage focal / L1 / GIoU losses.
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def box_area(b):
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def pairwise_iou_giou(a, b):
    """a (n, 4), b (m, 4) xyxy -> iou (n, m), giou (n, m)."""
    area_a = box_area(a)
    area_b = box_area(b)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    iou = inter / union.clamp(min=1e-6)
    lt2 = torch.min(a[:, None, :2], b[None, :, :2])
    rb2 = torch.max(a[:, None, 2:], b[None, :, 2:])
    wh2 = (rb2 - lt2).clamp(min=0)
    encl = wh2[..., 0] * wh2[..., 1]
    giou = iou - (encl - union) / encl.clamp(min=1e-6)
    return iou, giou


def elementwise_giou(a, b):
    """a, b (n, 4) -> giou (n,)"""
    area_a = box_area(a)
    area_b = box_area(b)
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-6)
    lt2 = torch.min(a[:, :2], b[:, :2])
    rb2 = torch.max(a[:, 2:], b[:, 2:])
    wh2 = (rb2 - lt2).clamp(min=0)
    encl = wh2[:, 0] * wh2[:, 1]
    return iou - (encl - union) / encl.clamp(min=1e-6)


class Criterion:
    """Loss weights follow the official config: focal 2.0, L1 5.0 (on boxes
    normalised by the image size), GIoU 2.0; the matching costs use the same
    weights (FocalLossCost 2, BBoxL1Cost 5, IoUCost giou 2)."""

    def __init__(self, num_classes, w_cls=2.0, w_l1=5.0, w_giou=2.0,
                 alpha=0.25, gamma=2.0, csla=True, csla_thr=0.5):
        self.nc = num_classes
        self.w_cls, self.w_l1, self.w_giou = w_cls, w_l1, w_giou
        self.alpha, self.gamma = alpha, gamma
        self.csla = csla
        self.csla_thr = csla_thr

    @torch.no_grad()
    def match(self, logits, boxes, gt_boxes, gt_labels, whwh):
        """One image, one stage: logits (N, NC), boxes (N, 4) px, gt (M, 4)
        -> (query idx, gt idx) LongTensors of the one-to-one assignment."""
        M = gt_boxes.shape[0]
        if M == 0:
            e = torch.zeros(0, dtype=torch.long)
            return e, e
        p = logits.sigmoid()[:, gt_labels]  # (N, M)
        a, g = self.alpha, self.gamma
        neg = (1 - a) * p ** g * -(1 - p + 1e-8).log()
        pos = a * (1 - p) ** g * -(p + 1e-8).log()
        c_cls = pos - neg
        nb = boxes / whwh
        ng = gt_boxes / whwh
        c_l1 = torch.cdist(nb, ng, p=1)
        _, giou = pairwise_iou_giou(boxes, gt_boxes)
        cost = self.w_cls * c_cls + self.w_l1 * c_l1 - self.w_giou * giou
        qi, gi = linear_sum_assignment(cost.cpu().numpy())
        return torch.as_tensor(qi, dtype=torch.long), torch.as_tensor(
            gi, dtype=torch.long)

    def focal(self, logits, target):
        p = logits.sigmoid()
        ce = F.binary_cross_entropy_with_logits(logits, target,
                                                reduction="none")
        pt = p * target + (1 - p) * (1 - target)
        w = self.alpha * target + (1 - self.alpha) * (1 - target)
        return (w * (1 - pt) ** self.gamma * ce).sum()

    def __call__(self, cls_all, boxes_all, targets, whwh):
        """cls_all / boxes_all: per stage (B, N, NC) / (B, N, 4) xyxy px.
        targets: list over images of (gt_boxes (M, 4), gt_labels (M,)).
        Returns total loss and a dict of per-term sums (for logging)."""
        S = len(cls_all)
        B, N, NC = cls_all[0].shape
        num_gt = max(sum(int(t[0].shape[0]) for t in targets), 1)
        # one-to-one matches of every stage and image
        matches = [[self.match(cls_all[s][b].detach(), boxes_all[s][b].detach(),
                               targets[b][0], targets[b][1], whwh)
                    for b in range(B)] for s in range(S)]
        tot = {"cls": 0.0, "l1": 0.0, "giou": 0.0}
        loss = 0.0
        for s in range(S):
            tgt = torch.zeros(B, N, NC)
            l1_sum = 0.0
            giou_sum = 0.0
            for b in range(B):
                gtb, gtl = targets[b]
                qi, gi = matches[s][b]
                if len(qi):
                    tgt[b, qi, gtl[gi]] = 1.0
                    pb = boxes_all[s][b][qi]
                    l1_sum = l1_sum + (pb / whwh - gtb[gi] / whwh).abs().sum()
                    giou_sum = giou_sum + (1 - elementwise_giou(pb, gtb[gi])).sum()
                if not self.csla or len(gtb) == 0:
                    continue
                # cross-stage label assignment: gather the matches of the
                # later stages t > s, keep pairs whose IoU between this
                # stage's box of the query and the GT box is >= thr
                with torch.no_grad():
                    iou, _ = pairwise_iou_giou(boxes_all[s][b].detach(), gtb)
                for t in range(s + 1, S):
                    qt, gt_ = matches[t][b]
                    if len(qt) == 0:
                        continue
                    keep = iou[qt, gt_] >= self.csla_thr
                    if keep.any():
                        tgt[b, qt[keep], gtl[gt_[keep]]] = 1.0
            lc = self.focal(cls_all[s], tgt) / num_gt
            ll = l1_sum / num_gt
            lg = giou_sum / num_gt
            loss = loss + self.w_cls * lc + self.w_l1 * ll + self.w_giou * lg
            tot["cls"] += float(lc)
            tot["l1"] += float(ll)
            tot["giou"] += float(lg)
        return loss, tot
