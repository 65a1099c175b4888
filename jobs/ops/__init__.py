"""Reusable Spark algorithms with neutral column names: MinHash-LSH, connected components."""
