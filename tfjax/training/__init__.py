"""Train state, optimizers, the step, checkpoints, metrics and the training loop."""
