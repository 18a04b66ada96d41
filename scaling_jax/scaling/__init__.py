"""Scaling-law analysis, reading run directories only (never the trainer).

runs (the run reader, tables) -> bcrit (the one B_crit(L) chooser) -> fit (laws, Huber +
L-BFGS, bootstrap via resample) -> frontier; study chains them into one typed analysis that
`scaling-jax fit`, `scaling-jax report`, the demo and the experiments share. batch analyses
batch-size sweeps, isoflop compute-optimal allocation, coverage the intervals' coverage.
"""
