"""What runs on the device: data, models, optimiser, the fast path, checkpoints, attacks, training, evaluation, the scoring run."""
