"""TLA: Tactile-Language-Action."""
__version__ = "0.6.0"
