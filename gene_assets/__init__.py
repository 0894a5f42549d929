"""gene_assets: GenePT-style gene embeddings as Dagster assets."""
