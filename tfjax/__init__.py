"""tfjax: the transformer family in pure-functional JAX/Flax."""

__version__ = "0.1.0"
