"""Kaplan et al. (2020) findings as runnable experiments: one folder per finding (README.md)."""
