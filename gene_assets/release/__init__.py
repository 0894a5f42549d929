"""The embeddings release: data/ versioned with DVC, pushed to a remote, tagged in git."""
