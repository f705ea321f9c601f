"""Model editing: ROME's rank-one update of one MLP's output weights (Meng et al. 2022)."""
