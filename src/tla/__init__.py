"""TLA: Tactile-Language-Action."""
__version__ = "0.4.0"
