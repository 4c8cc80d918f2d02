"""One module per layer step (bronze, silver, gold, load, alerts), plus the medical logic."""
