"""Training rows: train one row (all seeds) and evaluate it on val; the lambda search; test-dev."""
