"""robustft: clean noisy supervised fine-tuning data with LLM agents, then fine-tune on it."""

__version__ = "0.1.0"
