"""``gluon.nn``: layers."""
from ..block import Block, Sequential
from ..hybrid import HybridBlock
from ..symbol_block import SymbolBlock
from .activations import ELU, GELU, SELU, LeakyReLU, PReLU, Swish
from .basic_layers import (Activation, Dense, Dropout, Flatten, HybridLambda, HybridSequential, Identity,
                           Lambda)
from .conv_layers import (AvgPool1D, AvgPool2D, AvgPool3D, Conv1D, Conv1DTranspose, Conv2D,
                          Conv2DTranspose, Conv3D, GlobalAvgPool1D, GlobalAvgPool2D, GlobalMaxPool1D,
                          GlobalMaxPool2D, MaxPool1D, MaxPool2D, MaxPool3D, ReflectionPad2D)
from .conv_layers import Conv3DTranspose, GlobalAvgPool3D, GlobalMaxPool3D
from .norm_layers import BatchNorm, Embedding, GroupNorm, InstanceNorm, LayerNorm

__all__ = ["Block", "HybridBlock", "Sequential", "HybridSequential", "SymbolBlock", "Dense", "Activation",
           "Dropout", "Flatten", "Lambda", "HybridLambda", "Identity", "BatchNorm", "LayerNorm",
           "InstanceNorm", "GroupNorm", "Embedding", "LeakyReLU", "PReLU", "ELU", "SELU", "GELU", "Swish",
           "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "MaxPool1D", "MaxPool2D",
           "MaxPool3D", "AvgPool1D", "AvgPool2D", "AvgPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D",
           "GlobalAvgPool1D", "GlobalAvgPool2D", "ReflectionPad2D",
           "Conv3DTranspose", "GlobalMaxPool3D", "GlobalAvgPool3D"]
