"""Model families, each composing tfjax.nn blocks."""
