"""Model editing: ROME's rank-one update of one MLP's output weights (Meng et al. 2022) and MEMIT's batch edits over a range of MLPs (Meng et al. 2023)."""
