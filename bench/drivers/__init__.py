"""What runs a grid: the runner, Slurm executors, plan, status, verify, publish, smoke, the wall-clock guard."""
