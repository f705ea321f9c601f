"""Rehearsing the GPT-2 experiments offline: GPT-2's real tokenizer (from the openai-whisper
sdist, fetched by scripts/setup.sh), a narrow GPT-2 of random weights and a random SAE laid out
in a Hugging Face cache directory, and each GPT-2-default experiment run against it with
``runner.rehearsal=true`` (every ``expect:`` key must be produced; values are not judged).

    python -m interp_pipeline.rehearsal                 # build the cache, run every rehearsal
    python -m interp_pipeline.rehearsal ioi_patching    # one of them

Modules: gpt2_tokenizer (the tiktoken file -> a fast GPT-2 tokenizer), hf_cache (the
``HF_HOME`` snapshot), experiments (what is rehearsed, with which overrides), __main__ (runs them).
"""
