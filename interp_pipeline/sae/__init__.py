"""Training sparse autoencoders with SAELens, fed from this pipeline's activation stores.

``config`` checks the ``sae`` config group against its schema and maps it onto
SAELens's per-architecture training configs; ``data`` turns an activation store
into SAELens's data provider (an iterator of batches) with a held-out slice;
``trainer`` drives SAELens's ``SAETrainer`` and reports its metrics to our Tracker,
reaching SAELens's private members only through ``sae_lens_adapter``; ``storage``
is the stage-cache codec (a directory ``SAE.load_from_disk`` reads); ``toy`` is the
synthetic superposition data of Sharkey, Braun and Millidge 2022.
"""
