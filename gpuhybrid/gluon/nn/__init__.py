"""``gluon.nn``: layers."""
from ..block import Block, Sequential
from ..hybrid import HybridBlock
from ..symbol_block import SymbolBlock
from .activations import ELU, GELU, SELU, LeakyReLU, PReLU, Swish
from .basic_layers import (Activation, Dense, Dropout, Flatten, HybridLambda, HybridSequential, Identity,
                           Lambda)
from .norm_layers import BatchNorm, Embedding, GroupNorm, InstanceNorm, LayerNorm

__all__ = ["Block", "HybridBlock", "Sequential", "HybridSequential", "SymbolBlock", "Dense", "Activation",
           "Dropout", "Flatten", "Lambda", "HybridLambda", "Identity", "BatchNorm", "LayerNorm",
           "InstanceNorm", "GroupNorm", "Embedding", "LeakyReLU", "PReLU", "ELU", "SELU", "GELU", "Swish"]
