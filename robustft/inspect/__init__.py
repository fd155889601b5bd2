"""Inspecting finished runs: trace, report, gold metrics, ablations, human review."""
