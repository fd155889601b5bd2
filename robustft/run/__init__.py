"""Running the graph over a whole dataset: the runner and the run directory it owns."""
