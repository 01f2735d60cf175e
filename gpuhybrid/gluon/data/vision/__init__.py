"""``gluon.data.vision``: the standard image datasets read from local files, and image transforms."""
from . import datasets, transforms
from .datasets import CIFAR10, MNIST, FashionMNIST

__all__ = ["datasets", "transforms", "MNIST", "FashionMNIST", "CIFAR10"]
