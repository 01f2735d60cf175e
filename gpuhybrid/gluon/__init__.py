"""The gluon layer: blocks, parameters, initialisers and layers, as in MXNet Gluon."""
from . import init, nn
from .block import Block, Sequential
from .hybrid import HybridBlock
from .parameter import DeferredInitializationError, Parameter, ParameterDict
from .symbol_block import SymbolBlock

__all__ = ["init", "nn", "Block", "Sequential", "HybridBlock", "SymbolBlock", "Parameter", "ParameterDict",
           "DeferredInitializationError"]
