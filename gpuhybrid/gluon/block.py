"""``Block``: a piece of a model with parameters and children, run imperatively by ``forward``.

Names follow MXNet 1.x. A block made outside any ``name_scope()`` gets a prefix from its class and a
count (``dense0_``); one made inside ``with parent.name_scope():`` gets the parent's prefix and a count
within the parent (``hybridsequential0_dense0_``); ``prefix=`` sets it. Parameters are named
``prefix + name`` (``dense0_weight``), and ``params=other.params`` makes a block use the other block's
Parameter objects (shared weights). Children and parameters assigned as attributes are registered
automatically; a Parameter created on its own (``Parameter('weight')``) takes the prefix of the first
block it is assigned to (``mylayer0_weight``), so that two of them stay two parameters.

A block knows its parents, so changing the tree (adding, replacing or deleting a child or a parameter,
``hybridize`` flags, a parameter's grad_req, dtype or device) drops the compiled plans of the block and
of every block above it: the next call traces again.
"""
from __future__ import annotations

import itertools
import threading
import weakref
from collections import OrderedDict, defaultdict

from ..errors import GhError
from .parameter import Parameter, ParameterDict

_block_counters: defaultdict = defaultdict(itertools.count)


def unique_block_name(cls_name: str) -> str:
    base = cls_name.lower()
    return f"{base}{next(_block_counters[base])}"


class _BlockScope:
    """What ``with block.name_scope():`` sets: blocks made inside take the block's prefix."""
    _current = threading.local()

    def __init__(self, block: "Block"):
        self._block = block
        self._counter: dict = {}
        self._outer = None

    @staticmethod
    def create(prefix: str | None, params: ParameterDict | None, hint: str) -> tuple:
        """The prefix and parameter dict of a new block (MXNet 1.x's rules)."""
        if params is not None and not isinstance(params, ParameterDict):
            raise GhError(f"{hint}: params= takes a ParameterDict (e.g. other_block.params or "
                          f"net.collect_params()), got {type(params).__name__}")
        current = getattr(_BlockScope._current, "value", None)
        if current is None:
            prefix = unique_block_name(hint) + "_" if prefix is None else prefix
            own = ParameterDict(prefix) if params is None else ParameterDict(params.prefix, params)
            return prefix, own
        if prefix is None:
            count = current._counter.get(hint, 0)
            current._counter[hint] = count + 1
            prefix = f"{hint}{count}_"
        parent = current._block.params
        own = (ParameterDict(parent.prefix + prefix, parent._shared) if params is None
               else ParameterDict(params.prefix, params))
        return current._block.prefix + prefix, own

    def __enter__(self) -> "_BlockScope":
        if self._block.prefix:                  # a block with an empty prefix names nothing (as MXNet)
            self._outer = getattr(_BlockScope._current, "value", None)
            _BlockScope._current.value = self
        return self

    def __exit__(self, *exc) -> None:
        if self._block.prefix:
            _BlockScope._current.value = self._outer
            self._outer = None


class Block:
    """Base class of layers and models; override ``forward``."""

    def __init__(self, prefix: str | None = None, params: ParameterDict | None = None):
        set_plain = object.__setattr__
        set_plain(self, "_children", OrderedDict())
        set_plain(self, "_reg_params", OrderedDict())
        set_plain(self, "_forward_hooks", [])
        set_plain(self, "_parents", weakref.WeakSet())   # blocks holding this one: their plans include it
        prefix, params = _BlockScope.create(prefix, params, self._alias())
        set_plain(self, "_prefix", prefix)
        set_plain(self, "_params", params)
        set_plain(self, "_name", prefix[:-1] if prefix.endswith("_") else prefix)
        set_plain(self, "_scope", _BlockScope(self))

    def _alias(self) -> str:
        """The base of this block's default name (``dense`` gives dense0, dense1, ...), as MXNet's."""
        return type(self).__name__.lower()

    # --- registration -------------------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        held = self.__dict__.get(name)
        if isinstance(value, Block):
            if name in self._reg_params:             # a parameter attribute becomes a child
                self._unregister(name)
            if held is not value:
                self.register_child(value, name)
        elif isinstance(value, Parameter):
            if name in self._children:               # a child attribute becomes a parameter
                self._unregister(name)
            if held is not value:
                self._register_param(name, value)
        elif name in self.__dict__.get("_children", ()) or name in self.__dict__.get("_reg_params", ()):
            self._unregister(name)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in self._children or name in self._reg_params:
            self._unregister(name)
        object.__delattr__(self, name)

    def register_child(self, block: "Block", name: str | None = None) -> "Block":
        if not isinstance(block, Block):
            raise GhError(f"{self.name}.register_child: {block!r} is not a Block")
        name = str(len(self._children)) if name is None else name
        replaced = self._children.get(name)
        self._children[name] = block
        if replaced is not None and replaced is not block and replaced not in self._children.values():
            replaced._parents.discard(self)
        block._parents.add(self)
        self._drop_plans(structural=True)
        return block

    def _register_param(self, key: str, param: Parameter) -> None:
        """Hold ``param`` as attribute ``key`` (a hybrid_forward argument); a parameter no block has named
        yet takes this block's prefix."""
        renamed = param._named_by_block or param.name.startswith(self._prefix)
        name = param.name if renamed else self._prefix + param.name
        replaced = self._reg_params.get(key)
        held = self._params._params.get(name)
        if held is not None and held is not param and held is not replaced:
            raise GhError(f"{self.name}.{key}: this block already holds another parameter named {name!r}; "
                          f"give the Parameter another name (names key collect_params(), the traced graph "
                          f"and the files)")
        param.name, param._named_by_block = name, True
        self._reg_params[key] = param                   # a replaced parameter keeps its position
        if replaced is not None and replaced is not param:
            self._forget_param(replaced)
        self._params._add(param)
        param._owners.add(self)
        self._drop_plans(structural=True)

    def _forget_param(self, param: Parameter) -> None:
        if param not in self._reg_params.values():
            if self._params._params.get(param.name) is param:
                del self._params._params[param.name]
            param._owners.discard(self)

    def _unregister(self, name: str) -> None:
        if name in self._children:
            child = self._children.pop(name)
            if child not in self._children.values():
                child._parents.discard(self)
        else:
            self._forget_param(self._reg_params.pop(name))
        self._drop_plans(structural=True)

    def params_create(self, name: str, **kwargs) -> Parameter:
        """``self.params.get(name, **kwargs)`` held as attribute ``name`` (a hybrid_forward argument)."""
        param = self._params.get(name, **kwargs)
        setattr(self, name, param)
        return param

    def _drop_plans(self, structural: bool) -> None:
        """Forget the compiled plans of this block and of every block above it (``structural``: the tree
        itself changed, so the last traced graph is stale too)."""
        seen: set = set()
        pending = [self]
        while pending:
            block = pending.pop()
            if id(block) not in seen:
                seen.add(id(block))
                block._forget_plans(structural)
                pending.extend(block._parents)

    def _forget_plans(self, structural: bool) -> None:
        """A plain Block compiles nothing; HybridBlock drops its plans here."""

    def name_scope(self) -> _BlockScope:
        """``with self.name_scope():`` makes the blocks created inside take this block's prefix."""
        return self._scope

    @property
    def name(self) -> str:
        return self._name

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def params(self) -> ParameterDict:
        """This block's own parameters (not its children's), keyed by name."""
        return self._params

    def collect_params(self, select: str | None = None) -> ParameterDict:
        """Every parameter of this block and its descendants, by name, each once; ``select`` is a regex
        filter. Two different Parameter objects of one name raise (one would be lost)."""
        found, holder = ParameterDict(self._params.prefix), {}
        for block in self._unique_blocks():
            for param in itertools.chain(block._params.values(), block._reg_params.values()):
                held = found._params.get(param.name)
                if held is None:
                    found._params[param.name], holder[param.name] = param, block.name
                elif held is not param:
                    raise GhError(f"{self.name}: blocks {holder[param.name]} and {block.name} hold two "
                                  f"different parameters both named {param.name!r}; gpuhybrid keys "
                                  f"parameters by name (as MXNet 1.x), so one would be lost. Give the blocks "
                                  f"different prefixes (prefix=..., or create them inside "
                                  f"parent.name_scope()), or share one object (params=other.params)")
        return found.select(select) if select else found

    def _walk(self):
        """This block and its descendants, depth first (a block added twice comes twice)."""
        yield self
        for child in self._children.values():
            yield from child._walk()

    def _unique_blocks(self):
        """This block and its descendants, each once (a block added twice is one block)."""
        seen: set = set()
        pending = [self]
        while pending:
            block = pending.pop(0)
            if id(block) not in seen:
                seen.add(id(block))
                yield block
                pending[:0] = list(block._children.values())

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

    def cast(self, dtype) -> "Block":
        """Convert every parameter (this block's and its descendants') to ``dtype``."""
        for param in self.collect_params().values():
            param.cast(dtype)
        return self

    def apply(self, fn) -> "Block":
        """Call ``fn(block)`` on every descendant, then on this block."""
        for child in self._children.values():
            child.apply(fn)
        fn(self)
        return self

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

    def save_parameters(self, filename: str, deduplicate: bool = False) -> None:
        """Values keyed by structural path (``0.weight``); ``deduplicate`` stores a shared parameter once."""
        from .params_io import save_structured
        save_structured(self, filename, deduplicate)

    def load_parameters(self, filename: str, ctx=None, allow_missing: bool = False,
                        ignore_extra: bool = False, cast_dtype: bool = False,
                        dtype_source: str = "current") -> None:
        from .params_io import load_parameters
        load_parameters(self, filename, ctx, allow_missing, ignore_extra, cast_dtype, dtype_source)

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
