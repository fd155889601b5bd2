"""Model backends: one small class per kind of model, all returning `Generation`."""
