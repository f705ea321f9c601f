"""Linear probes on activation stores: labels lined up with store rows, logistic regression fitted in
memory (scikit-learn) or streamed from the store (torch), control tasks and selectivity."""
