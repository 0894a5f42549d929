"""Unseen genetic perturbation: from the perturbed gene's embedding alone, predict its transcriptional response."""
