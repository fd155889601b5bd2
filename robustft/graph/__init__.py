"""The LangGraph state machine: per-sample state, wiring, and the batch runner."""
