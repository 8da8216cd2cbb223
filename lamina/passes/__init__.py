"""IR -> IR transformations and the pass manager."""
