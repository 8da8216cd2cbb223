"""The elementwise functions shared by the prim dialect (on tensors) and the
loop dialect (on scalars and vectors): one table, two dialects."""

from __future__ import annotations

# name -> which operand dtypes it accepts: "float", "num" (int or float), "any", "int_bool"
UNARY: dict[str, str] = {
    "neg": "num", "abs": "num", "sign": "num", "exp": "float", "exp2": "float",
    "expm1": "float", "log": "float", "log2": "float", "log1p": "float", "sqrt": "float",
    "rsqrt": "float", "sin": "float", "cos": "float", "tan": "float", "tanh": "float",
    "logistic": "float", "erf": "float", "erfinv": "float", "floor": "float", "ceil": "float",
    "round": "float", "trunc": "float", "not": "int_bool", "isnan": "float",
}
# Unary ops whose result is i1 instead of the operand type.
UNARY_PREDICATES = frozenset({"isnan"})

BINARY: dict[str, str] = {
    "add": "num", "sub": "num", "mul": "num", "div": "num", "rem": "num", "pow": "num",
    "max": "num", "min": "num", "atan2": "float", "and": "int_bool", "or": "int_bool",
    "xor": "int_bool", "shl": "int", "shr": "int",
}
COMMUTATIVE = frozenset({"add", "mul", "max", "min", "and", "or", "xor"})

COMPARE: tuple[str, ...] = ("eq", "ne", "lt", "le", "gt", "ge")


def accepts(kind: str, dtype) -> bool:
    """Whether an elementwise function of this kind accepts this element type."""
    if kind == "float":
        return dtype.is_float
    if kind == "num":
        return dtype.is_float or dtype.is_int
    if kind == "int":
        return dtype.is_int
    if kind == "int_bool":
        return dtype.is_int or dtype.is_bool
    return True
