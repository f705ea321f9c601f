"""Factual recall (Meng et al. 2022): the toy world of made-up subjects and their facts
(``world``), and prompt sets tokenized into the facts dict causal tracing, probes and ROME
read (``prompts``); the prompt-set stages' settings (``config``). The toy task a model is
trained on is interp_pipeline.facts.task, built from this world."""
