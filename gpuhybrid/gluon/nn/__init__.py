"""``gluon.nn``: layers."""
from ..block import Block, Sequential
from ..hybrid import HybridBlock
from ..symbol_block import SymbolBlock
from .basic_layers import Activation, Dense, Dropout, Flatten, HybridLambda, HybridSequential, Lambda

__all__ = ["Block", "HybridBlock", "Sequential", "HybridSequential", "SymbolBlock", "Dense", "Activation",
           "Dropout", "Flatten", "Lambda", "HybridLambda"]
