"""TLA: Tactile-Language-Action."""
__version__ = "0.1.0"
