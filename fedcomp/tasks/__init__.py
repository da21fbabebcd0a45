"""Learning tasks: a model, real offline data, and train/evaluate loops."""
