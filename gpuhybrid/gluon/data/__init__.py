"""``gluon.data``: datasets, the DataLoader, and ``vision`` (MNIST, FashionMNIST, CIFAR10 and image
transforms), as in MXNet Gluon."""
from . import vision
from .dataloader import DataLoader
from .dataset import ArrayDataset, Dataset, SimpleDataset

__all__ = ["Dataset", "SimpleDataset", "ArrayDataset", "DataLoader", "vision"]
