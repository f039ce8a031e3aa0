"""Inference functions for real providers, and a simulated one for demos and tests."""

from .simulated import SimulatedModel

__all__ = ["SimulatedModel"]
