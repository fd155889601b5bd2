"""The agents, one module per role, each a LangGraph node: `make_<role>(runtime)` returns it.

Each node documents the state keys it reads and writes.
"""
