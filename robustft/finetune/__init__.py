"""Fine-tuning on the cleaned set, evaluating, exporting, whole experiments."""
