# mmcfg.py: a small, dependency-free reader of mmdetection 2.x / mmcv 1.x
# config files (Python or JSON), with mmcv's inheritance rules: `_base_`
# (a path or a list of paths, relative to the including file), recursive
# dict merge, `_delete_=True`, `{{_base_.a.b}}` whole-value substitution and
# the `{{ fileDirname }}`-style predefined variables.  No mmcv import.
"""Load mmcv-style config files without mmcv.

Usage::

    import mmcfg
    cfg = mmcfg.load("configs/stageinteractor/stageinteractor_r50_1x_coco.py")
    cfg["model"]["backbone"]["type"]

`load` returns plain dicts/lists/tuples (no ConfigDict).  Errors are raised as
`ConfigError` whose message names the file (and the chain of files that
included it).

Rules, as mmcv 1.3 applies them:

* A Python config is executed in a fresh namespace; every top-level name
  that does not start with `__` and is not a module, function or class
  becomes a config key.  All names share one namespace, so list
  comprehensions see earlier top-level names.
* `_base_` (str or list of str) names other config files, relative to the
  directory of the file that names them.  The bases are loaded (recursively)
  first; two bases of the same file may not define the same top-level key.
* The file's own keys are merged into the merged bases: a dict merges into a
  dict key by key, recursively; anything else replaces.  A dict holding
  `_delete_=True` replaces the base value instead of merging into it.  A dict
  merged onto a non-dict base value is an error (mmcv raises TypeError).
  Lists are never merged: a list replaces the base list.
* `{{_base_.x.y}}` in a file's text stands for the value at `x.y` of the
  merged bases.  Like mmcv it is replaced by a unique placeholder string
  before execution and swapped for the value afterwards, so it only works
  where the placeholder is a whole value (`a = {{_base_.x}}`,
  `dict(k={{_base_.x}})`), not inside an expression; such a use is reported.
* `{{ fileDirname }}`, `{{ fileBasename }}`, `{{ fileBasenameNoExtension }}`
  and `{{ fileExtname }}` are replaced by the file's own path parts.
"""

import builtins
import copy
import json
import os
import re
import types
import uuid

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"

_BASE_VAR_RE = re.compile(r"\{\{\s*_base_\.([\w\.]+)\s*\}\}")
_PREDEF_RE = re.compile(
    r"\{\{\s*(fileDirname|fileBasename|fileBasenameNoExtension|fileExtname)"
    r"\s*\}\}")
_ANY_BRACES_RE = re.compile(r"\{\{.*?\}\}")


class ConfigError(Exception):
    """A config file could not be read, executed or merged."""


def load(path):
    """Load the config at `path` with all its bases merged in.

    Returns a dict.  Raises ConfigError."""
    cfg = _load_file(os.path.abspath(path), chain=())
    _strip_delete_keys(cfg)
    return cfg


def _where(chain):
    if len(chain) <= 1:
        return ""
    return " (included from " + " -> ".join(
        os.path.basename(c) for c in chain[:-1]) + ")"


def _load_file(path, chain):
    chain = chain + (path,)
    if path in chain[:-1]:
        raise ConfigError("config %s: circular _base_ inheritance%s" %
                          (path, _where(chain)))
    if not os.path.isfile(path):
        raise ConfigError("config file %s not found%s" % (path, _where(chain)))
    ext = os.path.splitext(path)[1]
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("config %s: cannot read: %s%s" %
                          (path, e, _where(chain))) from None

    text = _substitute_predefined(text, path)
    text, placeholders = _pre_substitute_base_vars(text)

    if ext == ".py":
        own = _exec_python(text, path, chain, placeholders)
    elif ext == ".json":
        try:
            own = json.loads(text)
        except ValueError as e:
            raise ConfigError("config %s: invalid JSON: %s%s" %
                              (path, e, _where(chain))) from None
        if not isinstance(own, dict):
            raise ConfigError("config %s: top level is not an object%s" %
                              (path, _where(chain)))
    elif ext in (".yml", ".yaml"):
        try:
            import yaml  # optional, only for YAML configs
        except ImportError:
            raise ConfigError("config %s: YAML configs need PyYAML "
                              "(python3-yaml)%s" % (path, _where(chain))) \
                from None
        try:
            own = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError("config %s: invalid YAML: %s%s" %
                              (path, e, _where(chain))) from None
    else:
        raise ConfigError("config %s: unsupported file type '%s' "
                          "(expected .py, .json or .yaml)%s" %
                          (path, ext, _where(chain)))

    bases = own.pop(BASE_KEY, None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, (list, tuple)) and
              all(isinstance(b, str) for b in bases)):
        raise ConfigError("config %s: _base_ must be a string or a list of "
                          "strings, not %r%s" % (path, bases, _where(chain)))

    merged_bases = {}
    base_origin = {}
    for b in bases:
        bpath = os.path.normpath(os.path.join(os.path.dirname(path), b))
        if not os.path.isfile(bpath):
            raise ConfigError(
                "config %s: its _base_ '%s' does not exist (looked for %s)%s"
                % (path, b, bpath, _where(chain)))
        bcfg = _load_file(bpath, chain)
        dup = sorted(set(merged_bases) & set(bcfg))
        if dup:
            raise ConfigError(
                "config %s: key '%s' is defined by two of its bases (%s and "
                "%s); mmcv does not allow duplicate keys among bases%s" %
                (path, dup[0], os.path.basename(base_origin[dup[0]]),
                 os.path.basename(bpath), _where(chain)))
        for k in bcfg:
            base_origin[k] = bpath
        merged_bases.update(bcfg)

    if placeholders:
        own = _substitute_base_vars(own, placeholders, merged_bases, path,
                                    chain)
    try:
        return _merge(own, merged_bases, "")
    except ConfigError as e:
        raise ConfigError("config %s: %s%s" % (path, e, _where(chain))) \
            from None


def _substitute_predefined(text, path):
    base = os.path.basename(path)
    values = {
        "fileDirname": os.path.dirname(path),
        "fileBasename": base,
        "fileBasenameNoExtension": os.path.splitext(base)[0],
        "fileExtname": os.path.splitext(base)[1],
    }
    # The value is inserted as-is (mmcv does the same): the file is
    # expected to quote it, e.g. work_dir = '{{ fileDirname }}/out'.
    return _PREDEF_RE.sub(lambda m: values[m.group(1)].replace("\\", "/"),
                          text)


def _pre_substitute_base_vars(text):
    """Replace each {{_base_.x}} by a quoted unique placeholder string."""
    placeholders = {}

    def repl(m):
        ph = "_mmcfg_base_%s_%s" % (uuid.uuid4().hex[:8],
                                    m.group(1).replace(".", "_"))
        placeholders[ph] = m.group(1)
        return '"%s"' % ph

    text = _BASE_VAR_RE.sub(repl, text)
    return text, placeholders


def _substitute_base_vars(obj, placeholders, bases, path, chain):
    if isinstance(obj, str):
        if obj in placeholders:
            return copy.deepcopy(_lookup(bases, placeholders[obj], path,
                                         chain))
        for ph, var in placeholders.items():
            if ph in obj:
                raise ConfigError(
                    "config %s: {{_base_.%s}} is used inside an expression; "
                    "like mmcv, only a whole value can refer to a base "
                    "variable%s" % (path, var, _where(chain)))
        return obj
    if isinstance(obj, dict):
        return {k: _substitute_base_vars(v, placeholders, bases, path, chain)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_substitute_base_vars(v, placeholders, bases, path, chain)
                for v in obj]
    if isinstance(obj, tuple):
        return tuple(_substitute_base_vars(v, placeholders, bases, path,
                                           chain) for v in obj)
    return obj


def _lookup(cfg, dotted, path, chain):
    cur = cfg
    for part in dotted.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, (list, tuple)) and part.isdigit() and \
                int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise ConfigError("config %s: {{_base_.%s}}: the bases define "
                              "no '%s'%s" % (path, dotted, part,
                                             _where(chain)))
    return cur


def _exec_python(text, path, chain, placeholders):
    # A placeholder left over means a {{...}} we do not understand; executing
    # it would give a confusing set-literal error.
    m = _ANY_BRACES_RE.search(text)
    if m:
        line = text.count("\n", 0, m.start()) + 1
        raise ConfigError("config %s:%d: unsupported template '%s' (only "
                          "{{_base_.name}} and {{ fileDirname }}-style "
                          "variables are understood)%s" %
                          (path, line, m.group(0), _where(chain)))
    try:
        code = compile(text, path, "exec")
    except SyntaxError as e:
        raise ConfigError("config %s:%s: syntax error: %s%s" %
                          (path, e.lineno, e.msg, _where(chain))) from None
    # One dict for globals and locals: comprehensions and functions defined
    # in the file see its top-level names, as they do in an imported module.
    ns = {"__builtins__": builtins, "__file__": path, "__name__": "__config__"}
    try:
        exec(code, ns)
    except Exception as e:  # the config's own code failed
        line = ""
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == path:
                line = ":%d" % tb.tb_lineno
            tb = tb.tb_next
        hint = ""
        if placeholders:
            hint = (" (note: while the file runs, %s is a placeholder "
                    "string; like mmcv, a base variable can only be used as "
                    "a whole value, not inside an expression)" %
                    ", ".join("{{_base_.%s}}" % v
                              for v in sorted(set(placeholders.values()))))
        raise ConfigError("config %s%s: executing it raised %s: %s%s%s" %
                          (path, line, type(e).__name__, e, hint,
                           _where(chain))) from None
    out = {}
    for k, v in ns.items():
        if k.startswith("__"):
            continue
        if isinstance(v, (types.ModuleType, types.FunctionType,
                          types.BuiltinFunctionType, type)):
            continue
        out[k] = v
    # Detach the result from objects the file shares between names.
    return copy.deepcopy(out)


def _merge(child, base, where):
    """Merge dict `child` into a copy of dict `base` (mmcv rules)."""
    out = dict(base)
    for k, v in child.items():
        key = where + str(k)
        if isinstance(v, dict) and k in out and not v.get(DELETE_KEY, False):
            v = {kk: vv for kk, vv in v.items() if kk != DELETE_KEY}
            if not isinstance(out[k], dict):
                raise ConfigError(
                    "'%s' is a dict here but a %s in the base config; add "
                    "_delete_=True to replace the base value" %
                    (key, type(out[k]).__name__))
            out[k] = _merge(v, out[k], key + ".")
        else:
            out[k] = v
    return out


def _strip_delete_keys(obj):
    if isinstance(obj, dict):
        obj.pop(DELETE_KEY, None)
        for v in obj.values():
            _strip_delete_keys(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _strip_delete_keys(v)


def to_jsonable(obj):
    """Tuples -> lists, recursively; checks every key is a string and every
    leaf is JSON-representable (str, int, float, bool, None)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ConfigError("non-string key %r in config" % (k,))
            out[k] = to_jsonable(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise ConfigError("non-finite number %r in config" % obj)
        return obj
    raise ConfigError("value %r of type %s cannot be written as JSON" %
                      (obj, type(obj).__name__))
