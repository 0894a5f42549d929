"""Backbones (registry and encoders) and the per-backbone gene embedding tables."""
