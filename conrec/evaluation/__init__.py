"""`conrec evaluate`: every row of the paper's tables on one split, with seeds and baselines."""
