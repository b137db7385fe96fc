"""The paper's experiments as grids of runs: plan them, run them here, or launch them elsewhere.

`grid` expands an experiment gin file into runs; `runner` trains them one after another and
reports; `selection` chooses learning rates; `launchers` writes SLURM and TPU-VM scripts;
`command` is `ct5x sweep`.
"""
