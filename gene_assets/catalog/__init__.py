"""The gene catalog: one row per Entrez gene and identifier resolution for every task."""
