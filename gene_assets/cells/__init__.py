"""Cell embeddings (GenePT-w, GenePT-s) from every backbone's gene embeddings, and cell-type tasks on them."""
