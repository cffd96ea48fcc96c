"""Records into boards: statistics, significance, plots, one board's numbers, the rendered leaderboards."""
