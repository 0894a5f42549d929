"""Gene texts: the summaries that feed them and the text views that backbones embed."""
