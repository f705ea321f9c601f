"""Training sparse autoencoders with SAELens, fed from this pipeline's activation stores.

``config`` holds the SAE config groups' schemas (SAEConfig, SAEEvalConfig, SAESourceConfig,
the toy stages') and maps the ``sae`` group onto SAELens's per-architecture training
configs; ``training`` is the train_sae stage's work (one SAE, or several in one pass
through ``multi``); ``data`` turns an activation store into SAELens's data provider (an
iterator of batches) with a held-out slice, and ``heldout`` the token sequences behind
those rows (store_heldout_tokens); ``trainer`` drives SAELens's ``SAETrainer``
and reports its metrics to our Tracker, reaching SAELens's private members only through
``sae_lens_adapter``; ``evaluation`` runs SAELens's evals (the evaluate_sae stage);
``pretrained`` loads SAELens's registry's SAEs or one on disk (load_sae); ``storage`` is
the stage-cache codec (a directory ``SAE.load_from_disk`` reads); ``toy`` is the
synthetic superposition data of Sharkey, Braun and Millidge 2022.
"""
