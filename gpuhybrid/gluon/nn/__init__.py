"""``gluon.nn``: layers."""
from ..block import Block, Sequential
from ..hybrid import HybridBlock
from ..symbol_block import SymbolBlock
from .basic_layers import Activation, Dense, Dropout, Flatten, HybridLambda, HybridSequential, Lambda
from .norm_layers import BatchNorm, Embedding, LayerNorm

__all__ = ["Block", "HybridBlock", "Sequential", "HybridSequential", "SymbolBlock", "Dense", "Activation",
           "Dropout", "Flatten", "Lambda", "HybridLambda", "BatchNorm", "LayerNorm", "Embedding"]
