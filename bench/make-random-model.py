#!/usr/bin/python3
"""make-random-model.py: writes a full-size StageInteractor R-50 model with
RANDOM weights (for benchmarks only; never commit its output).

Keys, shapes and dtypes come from the state-dict table of model-spec.md
(section 8, r50 1x, 100 queries); the __metadata__ is the golden tiny case's
with its config edits (case.json) reverted to the official r50 values, and
--queries changes N (init_content_features, init_proposal_bboxes, num_query,
max_per_img).  Weights are scaled so that activations stay O(1): convs and
linears ~ N(0, 1/fan_in) (He for convs), norms weight 1 / bias 0, BN
running_var ~ U(0.5, 1.5).

usage: make-random-model.py --out FILE [--queries N] [--golden DIR]
       [--spec model-spec.md] [--seed S]
"""
import argparse
import json
import os
import re
import struct
import sys

import numpy as np


def parse_spec(path):
    rows = []
    pat = re.compile(r'^\| `([^`]+)` \| \[([0-9, ]*)\] \| (F32|I64) \|')
    in_section = False
    with open(path, encoding='utf-8') as f:
        for line in f:
            if line.startswith('## 8.'):
                in_section = True
            elif line.startswith('## ') and in_section:
                break
            if not in_section:
                continue
            m = pat.match(line)
            if m:
                shape = [int(s) for s in m.group(2).split(',') if s.strip()]
                rows.append((m.group(1), shape, m.group(3)))
    if len(rows) != 662:
        sys.exit('%s: expected 662 keys in section 8, found %d' % (path, len(rows)))
    return rows


def set_path(root, path, value):
    # path like model.roi_head.bbox_head[0].content_dim (without "model.")
    parts = re.findall(r'[^.\[\]]+|\[\d+\]', path)
    node = root
    for p in parts[:-1]:
        node = node[int(p[1:-1])] if p.startswith('[') else node[p]
    last = parts[-1]
    if value == '<absent>':
        node.pop(last, None)
    elif last.startswith('['):
        node[int(last[1:-1])] = value
    else:
        node[last] = value


def full_metadata(golden, queries):
    with open(os.path.join(golden, 'model.safetensors'), 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        meta = json.loads(f.read(n))['__metadata__']
    with open(os.path.join(golden, 'case.json'), encoding='utf-8') as f:
        case = json.load(f)
    model = json.loads(meta['model'])
    for e in case['config_edits']:
        if e['path'].startswith('model.'):
            set_path(model, e['path'][len('model.'):], e['old'])
    model['rpn_head']['num_query'] = queries
    for h in model['roi_head']['bbox_head']:
        if 'num_queries' in h:
            h['num_queries'] = queries
    model['test_cfg']['rcnn']['max_per_img'] = queries
    meta = dict(meta)
    meta['model'] = json.dumps(model)
    meta['test_scale'] = json.dumps([1333, 800])
    meta['source'] = 'bench/make-random-model.py (random weights)'
    return meta


def tensor(rng, name, shape, dtype, queries):
    if dtype == 'I64':
        return np.zeros(shape, dtype='<i8')
    if name == 'rpn_head.init_proposal_bboxes':
        return np.tile(np.array([0.5, 0.5, 1.0, 1.0], dtype='<f4'), (shape[0], 1))
    if name.endswith('running_var'):
        return rng.uniform(0.5, 1.5, shape).astype('<f4')
    if name.endswith('running_mean'):
        return rng.uniform(-0.1, 0.1, shape).astype('<f4')
    if len(shape) <= 1:
        n = name.rsplit('.', 1)
        is_norm = re.search(r'(bn\d|norm|gn_out|downsample\.1|_ln|\.ln)', name)
        if is_norm and n[-1] == 'weight':
            return np.ones(shape, dtype='<f4')
        if name.endswith('iof_tau'):
            return np.ones(shape, dtype='<f4')
        return rng.uniform(-0.05, 0.05, shape).astype('<f4')
    fan_in = int(np.prod(shape[1:]))
    std = np.sqrt((2.0 if len(shape) == 4 else 1.0) / fan_in)
    if name.startswith('rpn_head.init_content'):
        std = 1.0
    return (rng.standard_normal(shape, dtype=np.float32) * std).astype('<f4')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--queries', type=int, default=100)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument('--golden', default=os.path.join(here, '..', '..', 'shared', 'golden', 'tiny'))
    ap.add_argument('--spec', default=None)
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    spec = a.spec or os.path.join(a.golden, '..', '..', 'docs', 'model-spec.md')

    rows = parse_spec(spec)
    meta = full_metadata(a.golden, a.queries)
    rng = np.random.default_rng(a.seed)
    header = {'__metadata__': meta}
    offset = 0
    entries = []
    for name, shape, dtype in rows:
        if name in ('rpn_head.init_content_features.weight',
                    'rpn_head.init_proposal_bboxes'):
            shape = [a.queries] + shape[1:]
        size = int(np.prod(shape)) * (8 if dtype == 'I64' else 4)
        header[name] = {'dtype': dtype, 'shape': shape,
                        'data_offsets': [offset, offset + size]}
        entries.append((name, shape, dtype))
        offset += size
    hdr = json.dumps(header).encode('utf-8')
    hdr += b' ' * ((8 - len(hdr) % 8) % 8)
    tmp = a.out + '.part'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(hdr)))
        f.write(hdr)
        for name, shape, dtype in entries:
            f.write(tensor(rng, name, shape, dtype, a.queries).tobytes())
    os.replace(tmp, a.out)


if __name__ == '__main__':
    main()
