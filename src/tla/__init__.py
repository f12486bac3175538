"""TLA: Tactile-Language-Action."""
__version__ = "0.5.0"
