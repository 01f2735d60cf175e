"""``Block``: a piece of a model with parameters and children, run imperatively by ``forward``.

Children and parameters assigned as attributes are registered automatically; every block gets a
unique name from its class (``dense0``, ``dense1``, ...), and its parameters are named after it
(``dense0_weight``), without MXNet's name scopes.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict, defaultdict

from ..errors import GhError
from .parameter import Parameter, ParameterDict

_block_counters: defaultdict = defaultdict(itertools.count)


def unique_block_name(cls_name: str) -> str:
    base = cls_name.lower()
    return f"{base}{next(_block_counters[base])}"


class Block:
    """Base class of layers and models; override ``forward``."""

    def __init__(self, prefix: str | None = None, params=None):
        object.__setattr__(self, "_children", OrderedDict())
        object.__setattr__(self, "_reg_params", OrderedDict())
        object.__setattr__(self, "_forward_hooks", [])
        self._name = prefix.rstrip("_") if prefix else unique_block_name(type(self).__name__)

    # --- registration -------------------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, Block):
            self._children[name] = value
        elif isinstance(value, Parameter):
            self._reg_params[name] = value
        object.__setattr__(self, name, value)

    def register_child(self, block: "Block", name: str | None = None) -> "Block":
        self._children[name or str(len(self._children))] = block
        return block

    def params_create(self, name: str, **kwargs) -> Parameter:
        """A parameter named ``<block>_<name>`` registered under ``name`` (MXNet's ``params.get``)."""
        param = Parameter(f"{self._name}_{name}", **kwargs)
        self._reg_params[name] = param
        object.__setattr__(self, name, param)
        return param

    @property
    def name(self) -> str:
        return self._name

    @property
    def prefix(self) -> str:
        return self._name + "_"

    @property
    def params(self) -> ParameterDict:
        """This block's own parameters (not its children's)."""
        return ParameterDict((p.name, p) for p in self._reg_params.values())

    def collect_params(self, select: str | None = None) -> ParameterDict:
        """Every parameter of this block and its descendants, by name; ``select`` is a regex filter."""
        found = ParameterDict()
        for block in self._walk():
            for param in block._reg_params.values():
                found.setdefault(param.name, param)
        return found.select(select)

    def _walk(self):
        yield self
        for child in self._children.values():
            yield from child._walk()

    def _structured_params(self, prefix: str = "") -> OrderedDict:
        """Parameters by structural path (``0.weight``, ``features.1.bias``), stable across instances."""
        found = OrderedDict((prefix + key, p) for key, p in self._reg_params.items())
        for key, child in self._children.items():
            found.update(child._structured_params(f"{prefix}{key}."))
        return found

    # --- life cycle -----------------------------------------------------------------------------------
    def initialize(self, init=None, ctx=None, verbose: bool = False, force_reinit: bool = False) -> "Block":
        self.collect_params().initialize(init, ctx, verbose, force_reinit)
        return self

    def hybridize(self, active: bool = True, **kwargs) -> None:
        """Hybridize every hybridizable descendant (a plain Block itself stays imperative)."""
        for child in self._children.values():
            child.hybridize(active, **kwargs)

    def register_forward_hook(self, hook) -> None:
        """``hook(block, inputs, outputs)`` runs after each imperative forward call."""
        self._forward_hooks.append(hook)

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        for hook in self._forward_hooks:
            hook(self, args, out)
        return out

    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def save_parameters(self, filename: str) -> None:
        from .params_io import save_parameters
        save_parameters(self, filename)

    def load_parameters(self, filename: str, ctx=None, allow_missing: bool = False,
                        ignore_extra: bool = False) -> None:
        from .params_io import load_parameters
        load_parameters(self, filename, ctx, allow_missing, ignore_extra)

    def summary(self, *inputs) -> str:
        from .summary import summary
        return summary(self, *inputs)

    def __repr__(self) -> str:
        if self._repr_args():
            return f"{type(self).__name__}({self._repr_args()})"
        lines = [f"{type(self).__name__}("]
        for key, child in self._children.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({key}): {body}")
        lines.append(")")
        return "\n".join(lines) if self._children else f"{type(self).__name__}()"

    def _repr_args(self) -> str:
        return ""


class Sequential(Block):
    """Children run one after another."""

    def add(self, *blocks: Block) -> "Sequential":
        for block in blocks:
            if not isinstance(block, Block):
                raise GhError(f"{self.name}.add: {block!r} is not a Block")
            self.register_child(block)
        return self

    def forward(self, x, *args):
        for child in self._children.values():
            x = child(x, *args)
            args = ()
        return x

    def __getitem__(self, index):
        children = list(self._children.values())
        if isinstance(index, slice):
            new = type(self)()
            new.add(*children[index])
            return new
        return children[index]

    def __len__(self) -> int:
        return len(self._children)
