"""Check a ``torch.export`` archive (``.pt2``) before ``torch.export.load`` sees it.

``torch.export.load`` is not a safe loader: it unpickles sample inputs, "pickled" weights and
constants with ``weights_only=False`` (falling back to it when the safe load fails) or plain
``pickle.loads``, resolves graph call targets by ``getattr`` from the ``torch`` module (any callable
reachable from it, ``torch.os.system`` included), evaluates symbolic shapes with ``sympy.sympify``
(``eval``) and compiles the archive's ``guards_code`` into Python. A crafted ``.pt2`` could run code
on load or on its first forward. :func:`check_export_archive` accepts only what ``torch.export.save``
writes for an ordinary network, so that whatever ``torch.export.load`` then does is harmless:

* every pickle in the archive must load with ``torch.load(weights_only=True)`` (tensors and plain
  containers); custom / opaque objects (TorchBind, ``pickle.loads``) are refused;
* every graph call target must be an operator overload under ``torch.ops`` (or a plain arithmetic
  function of :mod:`operator` / :mod:`math`), spelled without dunders;
* every symbolic expression and guard must be a small arithmetic expression over sizes, built only
  from an allow-list of sympy constructors.

The archive is read from memory (``data``), the same bytes that are then loaded.
"""
from __future__ import annotations

import ast
import io
import json
import math
import operator
import re
import zipfile
from typing import Any, Iterator

import torch

from ..errors import ModelError

_OP_TARGET = re.compile(r"torch\.ops\.[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
_PLAIN_OPERATORS = frozenset({
    "getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs", "eq", "ne", "lt", "le",
    "gt", "ge", "and_", "or_", "xor", "not_", "invert", "lshift", "rshift", "matmul", "index", "truth",
})
_MATH = frozenset({"ceil", "floor", "trunc", "sqrt", "exp", "log", "log2", "log10", "sin", "cos", "tan", "tanh",
                   "fabs", "pow", "isnan", "isinf", "isfinite"})
# Constructors that appear in ``sympy.srepr`` of shape expressions and in the deserializer's locals.
_SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Abs", "Mod", "floor", "ceiling",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan", "Equality",
    "Unequality", "And", "Or", "Not", "Piecewise", "ExprCondPair", "true", "false", "oo", "zoo", "nan", "Infinity",
    "NegativeInfinity", "Zero", "One", "NegativeOne", "Half", "sqrt", "True", "False",
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv", "LShift",
    "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "OpaqueUnaryFn_sqrt",
    "BitwiseFn_bitwise_and", "BitwiseFn_bitwise_or", "BitwiseFn_bitwise_xor",
})
_SYMPY_KEYWORDS = frozenset({"positive", "integer", "real", "nonnegative", "negative", "finite", "extended_real",
                             "nonzero", "zero", "evaluate", "commutative"})
_SYMBOL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_SIZE_METHODS = frozenset({"size", "stride", "storage_offset", "dim"})
_SAFE_AST = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.operator, ast.unaryop, ast.cmpop,
             ast.boolop, ast.Load, ast.keyword)
_MAX_EXPR = 20_000


def _refuse(name: str, why: str) -> ModelError:
    return ModelError(f"{name}: refused - {why}; cnnviz loads only .pt2 archives of plain tensor programs "
                      "(torch.export.save of an ordinary network)")


def _json_strings(obj: Any, key: str) -> Iterator[str]:
    """Every string value of ``key`` anywhere in a JSON document."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            for k, v in o.items():
                if k == key and isinstance(v, str):
                    yield v
                elif isinstance(v, (dict, list)):
                    stack.append(v)
        elif isinstance(o, list):
            stack.extend(v for v in o if isinstance(v, (dict, list)))


def _resolves_to_operator(target: str) -> bool:
    if target.startswith("_operator."):
        return target[len("_operator."):] in _PLAIN_OPERATORS and callable(getattr(operator, target[10:], None))
    if target.startswith("math."):
        return target[len("math."):] in _MATH and callable(getattr(math, target[5:], None))
    if "__" in target or not _OP_TARGET.fullmatch(target):
        return False
    found: Any = torch
    for part in target.split(".")[1:]:
        try:
            found = getattr(found, part)
        except (AttributeError, RuntimeError):
            return False  # an unregistered custom op: torch.export.load fails on it anyway
    return isinstance(found, (torch._ops.OpOverload, torch._ops.OpOverloadPacket, torch._ops.HigherOrderOperator))


def _sympy_expression_ok(text: str) -> bool:
    """A ``sympy.srepr``-style expression: allow-listed calls of constants and symbol names."""
    if len(text) > _MAX_EXPR:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in _SYMPY_NAMES):
                return False
            if any(k.arg not in _SYMPY_KEYWORDS for k in node.keywords):
                return False
        elif isinstance(node, ast.Name):
            if node.id not in _SYMPY_NAMES and not _SYMBOL_NAME.fullmatch(node.id):
                return False
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) and not _SYMBOL_NAME.fullmatch(node.value):
                return False
            if not isinstance(node.value, (str, int, float, bool, type(None))):
                return False
        elif not isinstance(node, _SAFE_AST):
            return False
    return True


def _guard_ok(text: str) -> bool:
    """A shape guard such as ``(1 + (((-1) + L['x'].size()[3]) // 32)) != 1``."""
    if len(text) > _MAX_EXPR:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if node.keywords or not (isinstance(func, ast.Attribute) and func.attr in _SIZE_METHODS):
                return False
        elif isinstance(node, ast.Attribute):
            if node.attr not in _SIZE_METHODS:
                return False
        elif isinstance(node, ast.Name):
            if node.id != "L":
                return False
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", node.value):
                return False
            if isinstance(node.value, str) and node.value.startswith("__"):
                return False
            if not isinstance(node.value, (str, int, float, bool)):
                return False
        elif not isinstance(node, (*_SAFE_AST, ast.Subscript, ast.Tuple)):
            return False
    return True


def _weights_only_pickle(data: bytes) -> bool:
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - anything that is not a plain tensor pickle is refused
        return False
    return True


def check_export_archive(data: bytes, name: str) -> None:
    """Raise :class:`ModelError` (one line) unless ``data`` is a ``.pt2`` archive that is safe to
    give to ``torch.export.load`` (see the module docstring)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ModelError(f"{name}: not a torch.export archive (.pt2 files are zip archives written by "
                         "torch.export.save)") from None
    with zf:
        pickles = {n for n in names if n.endswith(".pt")}  # sample inputs, legacy weights, pre-2.8 archives
        programs = [n for n in names if n.endswith(".json") and ("/models/" in f"/{n}" or
                                                                  n.endswith("serialized_exported_program.json"))]
        if not programs:
            raise ModelError(f"{name}: not a torch.export archive (no program inside; write it with "
                             "torch.export.save)")
        for n in names:
            if not n.endswith("_config.json") or "/data/" not in f"/{n}":
                continue
            try:
                config = json.loads(zf.read(n)).get("config", {})
            except (ValueError, AttributeError, KeyError, zipfile.BadZipFile):
                raise _refuse(name, f"unreadable payload config {n}") from None
            folder = n.rsplit("/", 1)[0]
            for entry in config.values() if isinstance(config, dict) else ():
                path_name = str(entry.get("path_name", "")) if isinstance(entry, dict) else ""
                if path_name.startswith(("custom_obj", "opaque_obj")):
                    raise _refuse(name, f"it holds a Python object ({path_name}) that only unpickling code can load")
                if isinstance(entry, dict) and entry.get("use_pickle"):
                    pickles.add(f"{folder}/{path_name}")
        for n in sorted(pickles):
            try:
                blob = zf.read(n)
            except KeyError:
                continue
            if blob and not _weights_only_pickle(blob):
                raise _refuse(name, f"{n.rsplit('/', 1)[-1]} needs unpickling of Python code, which cnnviz never runs")
        for n in programs:
            try:
                doc = json.loads(zf.read(n))
            except (ValueError, UnicodeDecodeError):
                raise _refuse(name, f"unreadable program {n}") from None
            for target in set(_json_strings(doc, "target")):
                if not _resolves_to_operator(target):
                    raise _refuse(name, f"its graph calls {target[:80]!r}, which is not a tensor operator")
            for expr in set(_json_strings(doc, "expr_str")):
                if not _sympy_expression_ok(expr):
                    raise _refuse(name, "a symbolic shape expression is not plain arithmetic")
            guards = doc.get("guards_code", []) if isinstance(doc, dict) else []
            if not isinstance(guards, list) or not all(isinstance(g, str) and _guard_ok(g) for g in guards):
                raise _refuse(name, "its shape guards are not plain arithmetic on input sizes")
            for key in (doc.get("range_constraints") or {}) if isinstance(doc, dict) else ():
                if not _SYMBOL_NAME.fullmatch(str(key)):
                    raise _refuse(name, "a shape symbol has an unexpected name")
