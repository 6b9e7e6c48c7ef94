"""Architectures: finite layers with their infinite-width kernel transforms."""

from bayesnn.nn import kernels, stax
from bayesnn.nn.stax import (
    ABRelu,
    Dense,
    Elementwise,
    Erf,
    Gelu,
    Identity,
    Layer,
    LeakyRelu,
    Relu,
    Sigmoid,
    Tanh,
    serial,
)

__all__ = [
    "ABRelu",
    "Dense",
    "Elementwise",
    "Erf",
    "Gelu",
    "Identity",
    "Layer",
    "LeakyRelu",
    "Relu",
    "Sigmoid",
    "Tanh",
    "kernels",
    "serial",
    "stax",
]
