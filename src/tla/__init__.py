"""TLA: Tactile-Language-Action."""
__version__ = "0.2.0"
