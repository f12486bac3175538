"""Evaluation: metrics, offline scoring and closed-loop trials (shared by every policy)."""
