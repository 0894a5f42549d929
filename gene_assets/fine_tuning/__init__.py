"""Fine-tuning a sentence-transformers backbone with a classification head on gene tasks (Gan & Li), opt-in."""
