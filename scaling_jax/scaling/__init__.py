"""Scaling-law analysis: laws, fitting, batch-size analysis, frontier. Reads run dirs only."""
