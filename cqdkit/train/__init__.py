"""Training: the paper's five methods, the SGD loop, checkpoints, and the run/table/tune drivers."""
