"""Offline evaluation (paper section 4): who is evaluated, the metrics, the baselines.

`users` turns data windows into evaluation users (SID sets per population), `metrics` scores
top-k predictions and candidate rankings, `candidates` builds Candidate-Accuracy sets,
`baselines` and `sasrec` are the comparison models. Everything here is torch-free except
`sasrec`; the LLM's predictions come from the nightly job's engines (composed in `conrec`).
"""
