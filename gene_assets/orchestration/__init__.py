"""Launching runs on the local instance: the `gene-assets run` pipeline (partition by partition, up-to-date runs
skipped), one selection like the UI (`materialize`), and the dynamic partitions both register."""
