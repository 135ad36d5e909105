"""Machine learning on the payments: features, training, evaluation and tracking."""
