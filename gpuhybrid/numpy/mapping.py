"""Which registry op each ``np`` / ``npx`` name is built on, and the registry ops they leave out on purpose.

``np`` and ``npx`` are not a second op list: every function is a registry op called with NumPy's argument
names (``np.concatenate(seq, axis)`` is ``concat(*seq, dim=axis)``), or, where NumPy has a function the
registry lacks, a composition of registry ops (``np.linspace`` is ``arange`` times a step plus a start).
These tables say which, so ``tests/test_np_mapping.py`` can check that every registry op MXNet's np/npx
expose is reachable, and that the composed ones agree with NumPy.
"""
from __future__ import annotations

# np name -> the registry op it calls (for a composition: the op it is mostly made of).
NP_OPS = {
    # arithmetic and comparisons (two operands, either may be a Python number)
    "add": "add", "subtract": "sub", "multiply": "mul", "divide": "div", "true_divide": "div",
    "power": "pow", "mod": "mod", "remainder": "mod", "maximum": "maximum", "minimum": "minimum",
    "hypot": "hypot", "equal": "equal", "not_equal": "not_equal", "greater": "greater",
    "greater_equal": "greater_equal", "less": "lesser", "less_equal": "lesser_equal",
    "logical_and": "logical_and", "logical_or": "logical_or", "logical_xor": "logical_xor",
    "logical_not": "equal_scalar",
    # one operand
    "abs": "abs", "absolute": "abs", "negative": "negative", "exp": "exp", "expm1": "expm1", "log": "log",
    "log1p": "log1p", "log2": "log", "log10": "log", "sqrt": "sqrt", "square": "square",
    "reciprocal": "reciprocal", "sin": "sin", "cos": "cos", "tan": "sin", "tanh": "tanh", "sinh": "exp",
    "cosh": "exp", "sign": "sign", "ceil": "ceil", "floor": "floor", "round": "round", "around": "round",
    "trunc": "floor", "fix": "floor", "clip": "clip", "where": "where",
    # reductions
    "sum": "sum", "mean": "mean", "max": "max", "amax": "max", "min": "min", "amin": "min", "prod": "prod",
    "argmax": "argmax", "argmin": "argmax", "std": "mean", "var": "mean", "all": "min", "any": "max",
    "cumsum": "cumsum", "sort": "sort", "argsort": "argsort",
    # shapes
    "reshape": "reshape", "transpose": "transpose", "swapaxes": "transpose", "expand_dims": "expand_dims",
    "squeeze": "squeeze", "ravel": "reshape", "concatenate": "concat", "stack": "stack", "split": "split",
    "vstack": "concat", "hstack": "concat", "broadcast_to": "broadcast_to", "tile": "tile", "take": "take",
    "pad": "pad",
    # products
    "dot": "dot", "matmul": "matmul", "outer": "mul",
    # making arrays
    "zeros": "zeros", "ones": "ones", "full": "full", "empty": "zeros", "arange": "arange",
    "linspace": "arange", "eye": "equal", "zeros_like": "zeros_like", "ones_like": "ones_like",
    "full_like": "ones_like", "empty_like": "zeros_like",
}

NP_RANDOM_OPS = {"normal": "random_normal", "uniform": "random_uniform", "randint": "random_uniform",
                 "choice": "random_uniform", "shuffle": "random_uniform", "rand": "random_uniform",
                 "randn": "random_normal"}
NP_LINALG_OPS = {"norm": "norm"}

# npx name -> (registry op, {npx argument name: registry name} where they differ)
NPX_OPS = {
    "relu": ("relu", {}), "sigmoid": ("sigmoid", {}), "softmax": ("softmax", {}),
    "log_softmax": ("log_softmax", {}), "batch_flatten": ("flatten", {}),
    "activation": ("Activation", {}), "fully_connected": ("FullyConnected", {"x": "data"}),
    "pick": ("pick", {}), "one_hot": ("one_hot", {"data": "indices"}), "dropout": ("Dropout", {}),
    "batch_norm": ("BatchNorm", {"x": "data", "running_mean": "moving_mean", "running_var": "moving_var"}),
    "layer_norm": ("LayerNorm", {}), "instance_norm": ("InstanceNorm", {}),
    "convolution": ("Convolution", {}), "deconvolution": ("Deconvolution", {}),
    "pooling": ("Pooling", {}), "embedding": ("Embedding", {}), "leaky_relu": ("LeakyReLU", {}),
    "sequence_mask": ("SequenceMask", {}), "topk": ("topk", {}), "batch_dot": ("batch_dot", {}),
    "reshape_like": ("reshape_like", {}), "broadcast_like": ("broadcast_like", {}),
    "smooth_l1": ("smooth_l1", {}), "l2_normalization": ("L2Normalization", {}), "erf": ("erf", {}),
    "gelu": ("gelu", {}), "log_sigmoid": ("log_sigmoid", {}), "hard_sigmoid": ("hard_sigmoid", {}),
    "softsign": ("softsign", {}), "softrelu": ("softrelu", {}), "rsqrt": ("rsqrt", {}),
    "slice": ("slice", {}), "slice_axis": ("slice_axis", {}), "broadcast_axis": ("broadcast_axis", {}),
    "sum_to_shape": ("sum_to_shape", {}), "upsampling": ("UpSampling", {}),
}

# npx operators that return only their first output where the registry op returns more (MXNet's
# npx.batch_norm returns the normalised data; the batch statistics stay with the registry op).
NPX_FIRST_OUTPUT_ONLY = {"batch_norm"}

# Registry ops that no np/npx function is named after, and why (MXNet's np/npx leave them out too).
NOT_IN_NP = {
    "cast": "ndarray.astype(dtype)",
    "getitem": "indexing, x[key]",
    "add_n": "nd's add_n (MXNet 1.x); np code adds with + or np.add",
    "norm_apply": "an internal op of the BatchNorm lowering pass",
    "convolution_columns": "an internal op of the convolution lowering pass",
    "convolution_columns_backward": "gradient only", "swap_leading_axes": "an internal op of the convolution "
    "lowering pass",
    **{name: "an internal op of the convolution lowering pass" for name in (
        "depthwise_convolution", "depthwise_convolution_data", "depthwise_convolution_weight")},
    "convolution_weight_backward": "gradient only", "pooling_backward": "gradient only",
    "pooling_gather_backward": "gradient only", "getitem_backward": "gradient only",
    "pick_backward": "gradient only", "embedding_backward": "gradient only",
    "pad_backward": "gradient only",
    "layout_transpose": "an internal op of the channel-last lowering pass (np.transpose is the public one)",
    "convolution_activation": "an internal op of the GPU's cuDNN fusion pass",
}
