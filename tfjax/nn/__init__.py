"""Building blocks: linen modules where parameters live, pure functions for the math."""
