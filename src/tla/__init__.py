"""TLA: Tactile-Language-Action."""
__version__ = "0.3.0"
