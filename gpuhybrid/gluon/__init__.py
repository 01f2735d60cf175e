"""The gluon layer: blocks, parameters, initialisers, layers, losses, optimizers, the Trainer and data
loading, as in MXNet Gluon."""
from . import contrib, data, init, loss, nn, optimizer, utils
from .block import Block, Sequential
from .hybrid import HybridBlock
from .parameter import Constant, DeferredInitializationError, Parameter, ParameterDict
from .symbol_block import SymbolBlock
from .trainer import Trainer
from .compiled_step import CompiledStep, compile_step

__all__ = ["init", "nn", "contrib", "loss", "data", "optimizer", "utils", "Block", "Sequential",
           "HybridBlock", "SymbolBlock", "Parameter", "ParameterDict", "Constant",
           "DeferredInitializationError", "Trainer",
           "compile_step", "CompiledStep"]
