"""One small valid instance of every registered op, as canonical IR text.

``EXAMPLES[name]`` is a module whose print is exactly the text itself and that
verifies; ``test_roundtrip_ops`` checks both and that every op in ``lamina.ir.OPS``
has an entry, so a new op without an example fails the suite.
"""

from __future__ import annotations

from lamina.ir.dialects import elementwise as ew
from lamina.ir.dialects.tensor import TENSOR_BINARY_NAMES

# An element type each kind of elementwise function accepts.
_DTYPE = {"float": "f32", "num": "i32", "int": "i64", "int_bool": "i1", "any": "f64"}


def _func(args: str, body: list[str], results: str = "") -> str:
    lines = [f"func @f({args}) -> ({results}) {{"] + ["  " + b for b in body] + ["}"]
    return "\n".join(lines)


def _kernel(args: str, body: list[str]) -> str:
    return "\n".join([f"kernel @k({args}) {{"] + ["  " + b for b in body] + ["}"])


def _result_dtype(fn: str, dtype: str, predicate: bool = False) -> str:
    return "i1" if predicate or fn in ew.UNARY_PREDICATES else dtype


EXAMPLES: dict[str, str] = {}

# -- elementwise families, generated from the shared table -------------------------------
for _fn, _kind in ew.UNARY.items():
    _t = _DTYPE[_kind]
    _r = _result_dtype(_fn, _t)
    EXAMPLES[f"prim.{_fn}"] = _func(
        f"%x: tensor<2x?x{_t}>",
        [f"%0 = prim.{_fn} %x : tensor<2x?x{_r}>", "return %0"], f"tensor<2x?x{_r}>")
    EXAMPLES[f"tensor.{_fn}"] = _func(
        f"%x: tensor<{_t}>", [f"%0 = tensor.{_fn} %x : tensor<{_r}>", "return %0"],
        f"tensor<{_r}>")
    EXAMPLES[f"loop.{_fn}"] = _kernel(
        f"%a: vector<8x{_t}>", [f"%0 = loop.{_fn} %a : vector<8x{_r}>"])

for _fn, _kind in list(ew.BINARY.items()) + [(f, "any") for f in ew.COMPARE]:
    _t = _DTYPE[_kind]
    _r = _result_dtype(_fn, _t, _fn in ew.COMPARE)
    EXAMPLES[f"prim.{_fn}"] = _func(
        f"%x: tensor<?x3x{_t}>, %y: tensor<2x?x{_t}>",
        [f"%0 = prim.{_fn} %x, %y : tensor<2x3x{_r}>", "return %0"], f"tensor<2x3x{_r}>")
    _tn = TENSOR_BINARY_NAMES.get(_fn, _fn)
    EXAMPLES[f"tensor.{_tn}"] = _func(
        f"%x: tensor<2x1x{_t}>, %y: tensor<?x{_t}>",
        [f"%0 = tensor.{_tn} %x, %y : tensor<2x?x{_r}>", "return %0"], f"tensor<2x?x{_r}>")
    EXAMPLES[f"loop.{_fn}"] = _kernel(
        f"%a: {_t}, %b: {_t}", [f"%0 = loop.{_fn} %a, %b : {_r}"])

# -- the rest of the prim dialect ---------------------------------------------------------
EXAMPLES.update({
    "return": _func("%x: tensor<4xf32>", ["return %x"], "tensor<4xf32>"),
    "prim.where": _func(
        "%c: tensor<4xi1>, %x: tensor<4xbf16>, %y: tensor<?xbf16>",
        ["%0 = prim.where %c, %x, %y : tensor<4xbf16>", "return %0"], "tensor<4xbf16>"),
    "prim.cast": _func(
        "%x: tensor<4xf32>", ["%0 = prim.cast %x {dtype = bf16} : tensor<4xbf16>", "return %0"],
        "tensor<4xbf16>"),
    "prim.const": _func(
        "", ["%0 = prim.const {dtype = f16, shape = [2, 3], value = 1.5} : tensor<2x3xf16>",
             "return %0"], "tensor<2x3xf16>"),
    "prim.iota": _func(
        "", ["%0 = prim.iota {dim = 1, dtype = i64, shape = [2, 3]} : tensor<2x3xi64>",
             "return %0"], "tensor<2x3xi64>"),
    "prim.argmax": _func(
        "%x: tensor<2x?x4xf32>",
        ["%0 = prim.argmax %x {axis = 1} : tensor<2x4xi64>", "return %0"], "tensor<2x4xi64>"),
    "prim.argmin": _func(
        "%x: tensor<5xi8>", ["%0 = prim.argmin %x {axis = 0} : tensor<i64>", "return %0"],
        "tensor<i64>"),
    "prim.reshape": _func(
        "%x: tensor<2x3xf32>", ["%0 = prim.reshape %x {shape = [3, 1, 2]} : tensor<3x1x2xf32>",
                                "return %0"], "tensor<3x1x2xf32>"),
    "prim.permute": _func(
        "%x: tensor<2x?x4xf32>",
        ["%0 = prim.permute %x {perm = [2, 0, 1]} : tensor<4x2x?xf32>", "return %0"],
        "tensor<4x2x?xf32>"),
    "prim.broadcast": _func(
        "%x: tensor<3xf32>",
        ["%0 = prim.broadcast %x {dims = [1], shape = [2, 3]} : tensor<2x3xf32>", "return %0"],
        "tensor<2x3xf32>"),
    "prim.slice": _func(
        "%x: tensor<2x5xf32>",
        ["%0 = prim.slice %x {start = [0, 1], step = [1, 2], stop = [2, 5]} : tensor<2x2xf32>",
         "return %0"], "tensor<2x2xf32>"),
    "prim.pad": _func(
        "%x: tensor<2x3xf32>",
        ["%0 = prim.pad %x {high = [1, 0], low = [0, 2], value = -inf} : tensor<3x5xf32>",
         "return %0"], "tensor<3x5xf32>"),
    "prim.concat": _func(
        "%x: tensor<2x3xi32>, %y: tensor<?x3xi32>, %z: tensor<1x?xi32>",
        ["%0 = prim.concat %x, %y, %z {axis = 0} : tensor<?x3xi32>", "return %0"],
        "tensor<?x3xi32>"),
    "prim.dot_general": _func(
        "%a: tensor<4x2x3xf32>, %b: tensor<4x3x5xf32>",
        ["%0 = prim.dot_general %a, %b {lhs_batch = [0], lhs_contract = [2], rhs_batch = [0], "
         "rhs_contract = [1]} : tensor<4x2x5xf32>", "return %0"], "tensor<4x2x5xf32>"),
    "prim.fusion": _func(
        "%x: tensor<4xf32>, %y: tensor<4xf32>",
        ['%0 = prim.fusion %x, %y {name = "k0"} : tensor<4xf32> '
         "(%a: tensor<4xf32>, %b: tensor<4xf32>) {",
         "  %1 = prim.add %a, %b : tensor<4xf32>",
         "  prim.yield %1",
         "}",
         "return %0"], "tensor<4xf32>"),
})
EXAMPLES["prim.yield"] = EXAMPLES["prim.fusion"]
for _fn in ("sum", "prod", "max", "min"):
    EXAMPLES[f"prim.reduce_{_fn}"] = _func(
        "%x: tensor<2x3x?xf32>",
        [f"%0 = prim.reduce_{_fn} %x {{axes = [0, 2]}} : tensor<3xf32>", "return %0"],
        "tensor<3xf32>")

# -- the rest of the tensor dialect ---------------------------------------------------------
EXAMPLES.update({
    "tensor.relu": _func("%x: tensor<2x3xf32>", ["%0 = tensor.relu %x : tensor<2x3xf32>",
                                                 "return %0"], "tensor<2x3xf32>"),
    "tensor.where": _func(
        "%c: tensor<2x1xi1>, %x: tensor<3xf32>, %y: tensor<f32>",
        ["%0 = tensor.where %c, %x, %y : tensor<2x3xf32>", "return %0"], "tensor<2x3xf32>"),
    "tensor.cast": _func("%x: tensor<?xf32>", ["%0 = tensor.cast %x {dtype = i64} : tensor<?xi64>",
                                               "return %0"], "tensor<?xi64>"),
    "tensor.copy": _func("%x: tensor<?xf32>", ["%0 = tensor.copy %x : tensor<?xf32>",
                                               "return %0"], "tensor<?xf32>"),
    "tensor.full": _func(
        "", ["%0 = tensor.full {dtype = f32, shape = [2], value = 0.5} : tensor<2xf32>",
             "return %0"], "tensor<2xf32>"),
    "tensor.sum": _func(
        "%x: tensor<2x3xi32>",
        ["%0 = tensor.sum %x {dims = [1], keepdim = true} : tensor<2x1xi64>", "return %0"],
        "tensor<2x1xi64>"),
    "tensor.mean": _func(
        "%x: tensor<2x3xf32>",
        ["%0 = tensor.mean %x {dims = [], keepdim = false} : tensor<f32>", "return %0"],
        "tensor<f32>"),
    "tensor.prod": _func(
        "%x: tensor<2x3xf64>",
        ["%0 = tensor.prod %x {dims = [0], keepdim = false} : tensor<3xf64>", "return %0"],
        "tensor<3xf64>"),
    "tensor.amax": _func(
        "%x: tensor<2x?xi8>",
        ["%0 = tensor.amax %x {dims = [1, 0], keepdim = true} : tensor<1x1xi8>", "return %0"],
        "tensor<1x1xi8>"),
    "tensor.amin": _func(
        "%x: tensor<2x?xf16>",
        ["%0 = tensor.amin %x {dims = [1], keepdim = false} : tensor<2xf16>", "return %0"],
        "tensor<2xf16>"),
    "tensor.argmax": _func(
        "%x: tensor<2x3xf32>",
        ["%0 = tensor.argmax %x {dim = 0, keepdim = false} : tensor<3xi64>", "return %0"],
        "tensor<3xi64>"),
    "tensor.argmin": _func(
        "%x: tensor<2x3xf32>",
        ["%0 = tensor.argmin %x {dim = 1, keepdim = true} : tensor<2x1xi64>", "return %0"],
        "tensor<2x1xi64>"),
    "tensor.matmul": _func(
        "%a: tensor<5x2x3xf32>, %b: tensor<3x4xf32>",
        ["%0 = tensor.matmul %a, %b : tensor<5x2x4xf32>", "return %0"], "tensor<5x2x4xf32>"),
    "tensor.softmax": _func(
        "%x: tensor<2x?xf32>", ["%0 = tensor.softmax %x {dim = 1} : tensor<2x?xf32>",
                                "return %0"], "tensor<2x?xf32>"),
    "tensor.log_softmax": _func(
        "%x: tensor<2x?xbf16>", ["%0 = tensor.log_softmax %x {dim = 0} : tensor<2x?xbf16>",
                                 "return %0"], "tensor<2x?xbf16>"),
    "tensor.reshape": _func(
        "%x: tensor<2x3xf32>", ["%0 = tensor.reshape %x {shape = [6]} : tensor<6xf32>",
                                "return %0"], "tensor<6xf32>"),
    "tensor.permute": _func(
        "%x: tensor<2x3xf32>", ["%0 = tensor.permute %x {perm = [1, 0]} : tensor<3x2xf32>",
                                "return %0"], "tensor<3x2xf32>"),
    "tensor.expand": _func(
        "%x: tensor<3x1xf32>", ["%0 = tensor.expand %x {shape = [2, 3, 4]} : tensor<2x3x4xf32>",
                                "return %0"], "tensor<2x3x4xf32>"),
    "tensor.slice": _func(
        "%x: tensor<?xf32>",
        ["%0 = tensor.slice %x {start = [1], step = [3], stop = [8]} : tensor<3xf32>",
         "return %0"], "tensor<3xf32>"),
    "tensor.cat": _func(
        "%x: tensor<2x3xf32>, %y: tensor<2x1xf32>",
        ["%0 = tensor.cat %x, %y {dim = 1} : tensor<2x4xf32>", "return %0"], "tensor<2x4xf32>"),
})

# -- the rest of the loop dialect -------------------------------------------------------------
_SUM_LOOP = _kernel("%m: memref<?xf32>, %out: memref<1xf32>", [
    "%0 = loop.const {value = 0} : index",
    "%1 = loop.const {value = 1} : index",
    "%2 = loop.dim %m {axis = 0} : index",
    "%3 = loop.const {value = 0.0} : f32",
    "%4 = loop.for %0, %2, %1, %3 : f32 (%i: index, %acc: f32) {",
    "  %5 = loop.load %m, %i : f32",
    "  %6 = loop.add %acc, %5 : f32",
    "  loop.yield %6",
    "}",
    "loop.store %4, %out, %0",
])
_PROGRAM = "\n".join([
    _kernel("%a: memref<?xf32, strided<[?]>>, %b: memref<?xf32>", []),
    "",
    "func @p(%x: memref<?xf32, strided<[?]>>) -> (memref<?xf32>) {",
    "  %0 = loop.dim %x {axis = 0} : index",
    "  %1 = loop.alloc %0 : memref<?xf32>",
    "  loop.call %x, %1 {kernel = @k}",
    "  return %1",
    "}",
])
EXAMPLES.update({
    "loop.select": _kernel("%c: vector<4xi1>, %a: vector<4xi8>, %b: vector<4xi8>",
                           ["%0 = loop.select %c, %a, %b : vector<4xi8>"]),
    "loop.cast": _kernel("%a: index", ["%0 = loop.cast %a {dtype = f32} : f32"]),
    "loop.const": _kernel("", ["%0 = loop.const {value = 1.5} : bf16"]),
    "loop.splat": _kernel("%a: f32", ["%0 = loop.splat %a {width = 8} : vector<8xf32>"]),
    "loop.vreduce": _kernel("%v: vector<8xf32>", ['%0 = loop.vreduce %v {fn = "max"} : f32']),
    "loop.dim": _kernel("%m: memref<?x4xf32>", ["%0 = loop.dim %m {axis = 0} : index"]),
    "loop.load": _kernel("%m: memref<?x4xindex, strided<[?, 1]>>, %i: index, %j: index",
                         ["%0 = loop.load %m, %i, %j : index"]),
    "loop.store": _kernel("%v: f32, %m: memref<4xf32>, %i: index", ["loop.store %v, %m, %i"]),
    "loop.vload": _kernel("%m: memref<?x16xf32>, %i: index, %j: index",
                          ["%0 = loop.vload %m, %i, %j {width = 8} : vector<8xf32>"]),
    "loop.vstore": _kernel("%v: vector<8xf32>, %m: memref<16xf32>, %i: index",
                           ["loop.vstore %v, %m, %i"]),
    "loop.for": _SUM_LOOP,
    "loop.yield": _SUM_LOOP,
    "loop.parallel": _kernel("%m: memref<?xf32>", [
        "%0 = loop.const {value = 0} : index",
        "%1 = loop.const {value = 1} : index",
        "%2 = loop.dim %m {axis = 0} : index",
        "loop.parallel %0, %2, %1 (%i: index) {",
        "  %3 = loop.load %m, %i : f32",
        "  %4 = loop.neg %3 : f32",
        "  loop.store %4, %m, %i",
        "}",
    ]),
    "loop.gpu_parallel": _kernel("%m: memref<?xf32>", [
        "%0 = loop.const {value = 0} : index",
        "%1 = loop.const {value = 1} : index",
        "%2 = loop.dim %m {axis = 0} : index",
        "loop.gpu_parallel %0, %2, %1 {block = 256} (%i: index) {",
        "  %3 = loop.load %m, %i : f32",
        "  loop.store %3, %m, %i",
        "}",
    ]),
    "loop.lane_for": _kernel("%m: memref<?x?xf32>, %o: memref<?xf32>", [
        "%0 = loop.const {value = 0} : index",
        "%1 = loop.const {value = 1} : index",
        "%2 = loop.dim %m {axis = 0} : index",
        "%3 = loop.dim %m {axis = 1} : index",
        "%4 = loop.const {value = 0.0} : f32",
        "loop.gpu_parallel %0, %2, %1 {block = 256, lanes = 32} (%i: index) {",
        "  %5 = loop.lane_for %0, %3, %1, %4 {combine = [\"add\"]} : f32 (%j: index, %acc: f32) {",
        "    %6 = loop.load %m, %i, %j : f32",
        "    %7 = loop.add %acc, %6 : f32",
        "    loop.yield %7",
        "  }",
        "  loop.lane0_store %5, %o, %i",
        "}",
    ]),
    "loop.alloc": _PROGRAM,
    "loop.call": _PROGRAM,
    "loop.arena": "\n".join([
        _kernel("%a: memref<4xf32>", []),
        "",
        "func @p() -> (memref<4xf32>) {",
        "  loop.arena {size = 64}",
        "  %0 = loop.alloc {offset = 0} : memref<4xf32>",
        "  loop.call %0 {kernel = @k}",
        "  %1 = loop.alloc : memref<4xf32>",
        "  loop.call %1 {kernel = @k}",
        "  return %1",
        "}",
    ]),
})

# -- index primitives (lamina.ir.dialects.prim_index) ------------------------------------------
EXAMPLES.update({
    "prim.reverse": _func(
        "%x: tensor<2x?xf32>",
        ["%0 = prim.reverse %x {axes = [1]} : tensor<2x?xf32>", "return %0"], "tensor<2x?xf32>"),
    "prim.gather": _func(
        "%x: tensor<5x?xf32>, %i: tensor<3x4xi64>",
        ["%0 = prim.gather %x, %i {axis = 0} : tensor<3x4xf32>", "return %0"],
        "tensor<3x4xf32>"),
    "prim.scatter_add": _func(
        "%x: tensor<5x4xf32>, %i: tensor<3x4xi32>, %s: tensor<?x4xf32>",
        ["%0 = prim.scatter_add %x, %i, %s {axis = 0} : tensor<5x4xf32>", "return %0"],
        "tensor<5x4xf32>"),
    "prim.scatter": _func(
        "%x: tensor<?xi1>, %i: tensor<3xi64>, %s: tensor<3xi1>",
        ["%0 = prim.scatter %x, %i, %s {axis = 0} : tensor<?xi1>", "return %0"],
        "tensor<?xi1>"),
    "prim.cumulative": _func(
        "%x: tensor<2x?xbf16>",
        ['%0 = prim.cumulative %x {axis = 1, fn = "prod"} : tensor<2x?xbf16>', "return %0"],
        "tensor<2x?xbf16>"),
    "prim.argsort": _func(
        "%x: tensor<?x3xf16>",
        ["%0 = prim.argsort %x {axis = 0, descending = true} : tensor<?x3xi64>", "return %0"],
        "tensor<?x3xi64>"),
    "prim.compact": _func(
        "%m: tensor<?xi1>, %n: tensor<?xf32>",
        ["%0 = prim.compact %m, %n : tensor<?xi64>", "return %0"], "tensor<?xi64>"),
})

# -- positional sources (lamina.ir.dialects.prim_random) ---------------------------------------
EXAMPLES.update({
    "prim.random_bits": _func(
        "%k: tensor<2x?xi64>, %o: tensor<2x?xi64>",
        ["%0 = prim.random_bits %k, %o {stride = 2, word = 1} : tensor<2x?xi64>", "return %0"],
        "tensor<2x?xi64>"),
    "prim.iota_like": _func(
        "%x: tensor<?x3xf16>",
        ["%0 = prim.iota_like %x {dim = 1, dtype = i32} : tensor<?x3xi32>", "return %0"],
        "tensor<?x3xi32>"),
})

# -- convolution and pooling (lamina.ir.dialects.prim_conv, tensor_conv) ---------------------
_POOL2 = "ceil_mode = true, dilation = [1, 2], padding = [1, 1], stride = [2, 2], window = [3, 2]"
_AVG2 = ("ceil_mode = true, count_include_pad = false, divisor = 0, padding = [1, 1], "
         "stride = [2, 2], window = [3, 2]")


def _one(op: str, args: str, attrs: str, result: str) -> str:
    operands = ", ".join(a.split(":")[0] for a in args.split(", "))
    return _func(args, [f"%0 = {op} {operands} {{{attrs}}} : {result}", "return %0"], result)


EXAMPLES.update({
    "prim.conv": _one(
        "prim.conv", "%x: tensor<2x4x?x9xf32>, %w: tensor<6x2x3x3xf32>",
        "dilation = [2, 1], groups = 2, high = [1, -1], input_dilation = [1, 2], low = [0, 2], "
        "stride = [1, 2], transposed = false", "tensor<2x6x?x8xf32>"),
    "prim.conv_weight_grad": _one(
        "prim.conv_weight_grad", "%x: tensor<2x4x9xf64>, %g: tensor<2x6x?xf64>",
        "dilation = [1], groups = 2, high = [0], input_dilation = [1], kernel = [3], low = [0], "
        "stride = [1], transposed = true", "tensor<4x3x3xf64>"),
    "prim.max_pool": _one("prim.max_pool", "%x: tensor<2x?x7x9xf32>", _POOL2,
                          "tensor<2x?x4x5xf32>"),
    "prim.max_pool_index": _one(
        "prim.max_pool_index", "%x: tensor<3x?x7xf16>",
        "ceil_mode = false, dilation = [1], padding = [0], stride = [2], window = [3]",
        "tensor<3x?x3xi64>"),
    "prim.max_pool_grad": _one("prim.max_pool_grad",
                               "%x: tensor<2x7x9xf32>, %g: tensor<2x4x5xf32>", _POOL2,
                               "tensor<2x7x9xf32>"),
    "prim.avg_pool": _one("prim.avg_pool", "%x: tensor<2x?x7x9xbf16>", _AVG2,
                          "tensor<2x?x4x5xbf16>"),
    "prim.avg_pool_grad": _one(
        "prim.avg_pool_grad", "%x: tensor<5x8xf32>, %g: tensor<5x3xf32>",
        "ceil_mode = true, count_include_pad = false, divisor = 2, padding = [1], "
        "stride = [3], window = [3]", "tensor<5x8xf32>"),
    "prim.adaptive_avg_pool": _one("prim.adaptive_avg_pool", "%x: tensor<2x?x7x9xf32>",
                                   "output = [3, 4]", "tensor<2x?x3x4xf32>"),
    "prim.adaptive_avg_pool_grad": _one(
        "prim.adaptive_avg_pool_grad", "%x: tensor<2x3x7x9xf32>, %g: tensor<2x3x3x4xf32>",
        "output = [3, 4]", "tensor<2x3x7x9xf32>"),
    "tensor.conv": _one(
        "tensor.conv", "%x: tensor<2x4x?x9xf32>, %w: tensor<6x2x3x3xf32>",
        "dilation = [2, 1], groups = 2, high = [1, 2], low = [1, 0], stride = [1, 2]",
        "tensor<2x6x?x5xf32>"),
    "tensor.conv_transpose": _one(
        "tensor.conv_transpose", "%x: tensor<2x4x5x9xf32>, %w: tensor<4x3x3x3xf32>",
        "dilation = [1, 1], groups = 2, output_padding = [1, 0], padding = [1, 0], "
        "stride = [2, 1]", "tensor<2x6x10x11xf32>"),
    "tensor.max_pool": _one("tensor.max_pool", "%x: tensor<2x?x7x9xf32>", _POOL2,
                            "tensor<2x?x4x5xf32>"),
    "tensor.max_pool_index": _one(
        "tensor.max_pool_index", "%x: tensor<2x3x7x9xf32>",
        "ceil_mode = false, dilation = [1, 1], padding = [0, 0], stride = [2, 2], "
        "window = [2, 2]", "tensor<2x3x3x4xi64>"),
    "tensor.avg_pool": _one("tensor.avg_pool", "%x: tensor<2x?x7x9xf32>", _AVG2,
                            "tensor<2x?x4x5xf32>"),
    "tensor.adaptive_avg_pool": _one("tensor.adaptive_avg_pool", "%x: tensor<2x?x7x9xf32>",
                                     "output = [3, 4]", "tensor<2x?x3x4xf32>"),
})
EXAMPLES["loop.lane0_store"] = EXAMPLES["loop.lane_for"]  # that kernel ends with one

# -- movement under ? leading sizes (lamina.ir.dialects.prim_shape) ----------------------------
EXAMPLES["prim.reshape_tail"] = _func(
    "%x: tensor<?x2x3xf32>",
    ["%0 = prim.reshape_tail %x {keep = 1, shape = [?, 6]} : tensor<?x6xf32>", "return %0"],
    "tensor<?x6xf32>")
EXAMPLES["prim.fill_batch"] = _func(
    "%v: tensor<f32>, %x: tensor<?x3xf32>",
    ["%0 = prim.fill_batch %v, %x {shape = [2, ?, 4]} : tensor<2x?x4xf32>", "return %0"],
    "tensor<2x?x4xf32>")
EXAMPLES["prim.slice_keep"] = _func(
    "%x: tensor<4x?x6xf32>",
    ["%0 = prim.slice_keep %x {drop = [0], start = [1, 0, 2], step = [1, 1, 2], "
     "stop = [2, ?, 6]} : tensor<?x2xf32>", "return %0"],
    "tensor<?x2xf32>")
