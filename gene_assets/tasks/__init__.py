"""Gene-level tasks: labels mapped through the catalog and a cross-validated evaluation engine."""
