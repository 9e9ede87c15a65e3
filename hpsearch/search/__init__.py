"""Trials run on a study: opening it, the run loop, the objective, samplers and pruners, workers, confirmation."""
