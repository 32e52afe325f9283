"""Evaluation: metrics (registered plugins) and, later, rollouts, plots and tables."""
