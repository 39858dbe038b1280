"""Results of the sweeps reported in bench/RESULTS.md (study databases, trials.csv, frontier.md)."""
