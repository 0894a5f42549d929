"""External inputs: the data directory, Bioconductor annotation databases, NCBI E-utilities."""
