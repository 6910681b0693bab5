"""Offline evaluation (paper section 4) and `conrec evaluate` / `conrec backtest`: every row of
the paper's tables on one split, with seeds, baselines and the decision a ranking service gets.

The protocol: `split` builds the validation and test splits (who is evaluated, at which cutoff,
seeing which events), `users` the SID sets per population, `candidates` the Candidate-Accuracy
sets. The instruments: `list_metrics` (HR/FHR/LUF/LIF@k and Candidate Accuracy), `cases` and
`decision` (within-user AUC, negatives caught at a budget of positives lost). The competitors:
`baselines`, `sasrec` (the one torch row), `tuning` (each tuned on the validation split), the
LLM rows through the nightly job's engines (`llm`) and the calibrated score (`calibrated`).
The runs: `rows` names them, `run` and `backtest` run them, `results` writes the tables.
"""
