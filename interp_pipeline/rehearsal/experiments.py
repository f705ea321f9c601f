"""What the GPT-2 rehearsal runs: every experiment whose default model is GPT-2 small, with the
overrides that keep it small on a CPU (few sequences, tokens and steps) and point its hub data at
the rehearsal's local text. The model (``model=gpt2_small``), prompts, hooks, SAE release and
``expect:`` keys stay each experiment's own.

A new GPT-2-default experiment joins by adding an entry here (the test in
tests/rehearsal/test_gpt2_rehearsal.py runs every entry and also fails when a conf/experiment/*.yaml
defaulting to gpt2_small has none). A bigger GPT-2's config may join too, rehearsed at GPT-2 small's
shapes (``model=gpt2_small`` among its overrides); a config on Gemma 3 270M (``model=gemma3_270m``,
at the shapes interp_pipeline/rehearsal/gemma3.py writes); and one on the cached GPT-2 loaded as a
TransformerBridge (``model=hf``). ``{text}`` in an override is the rehearsal's
jsonl file, ``{transcoders}`` its transcoder folder.
"""

from __future__ import annotations

# Text from the hub (pile-10k, OpenWebText) -> the same hf_dataset_tokens stage over a local json file.
_LOCAL_TEXT = ["data.params.name=json", "++data.params.data_files={text}", "++data.params.streaming=false"]

# 40 rows of 128: 4,608 training tokens (9 steps of 512) and 4 held-out sequences.
_SAE_TRAIN = [*_LOCAL_TEXT, "data.params.max_sequences=40", "sae.training_tokens=4608",
              "sae.train_batch_size_tokens=512", "sae.eval_tokens=512", "sae.l1_warm_up_steps=2",
              "sae.lr_decay_steps=2", "sae.feature_sampling_window=4", "sae.dead_feature_window=4",
              "sae.log_every=2", "sae_eval.batch_size_prompts=4"]

REHEARSALS: dict[str, list[str]] = {
    # The 8 demo prompts, path and attribution patching as configured; of the grids, the two the
    # expect: keys and the demo read (block_every and head_all_pos_every are 4/5 of the passes:
    # all of them take 264 forward passes, ~130 s on a busy 2-core machine).
    "ioi_patching": ["patching.grids=[head_out,resid_pre]"],
    # The same on a TransformerBridge of the cached GPT-2 (model=hf, the hub id; the demo's prompts and
    # expect: keys kept by naming their config, which model=hf would swap for Wang et al.'s templates):
    # the Bridge's fast path (models/bridge_blocks.py), which the test finds in the log.
    "ioi_patching_bridge": ["model=hf", "model.name_or_path=gpt2", "ioi=gpt2_small",
                            "patching.grids=[head_out,resid_pre]"],
    "cache_activations": [*_LOCAL_TEXT, "data.params.max_sequences=16", "cache.batch_size_prompts=8"],
    "sae_train": _SAE_TRAIN,
    "sae_eval_pretrained": [*_LOCAL_TEXT, "data.params.max_sequences=8", "sae_eval.batch_size_prompts=4"],
    "inspect_model": [],
    "logit_lens": [],
    "sae_features": [*_LOCAL_TEXT, "data.params.max_sequences=8"],
    "induction_heads": [],
    # ActAdd's "Love" - "Hate" (conf/steering_setup/gpt2_small.yaml): the ordinary text from the local file.
    "steering": ["model=gpt2_small", "steer_data.params.name=json", "++steer_data.params.data_files={text}",
                 "++steer_data.params.streaming=false", "steer_data.params.max_sequences=4", "steer.max_new_tokens=4",
                 "steer.control=false"],
    # One trial of the search, as a single run: sae_train's pipeline at the search's SAE size.
    "sae_l1_search_gpt2": _SAE_TRAIN,
    # Edge scores over GPT-2's 32,491 edges on a few prompts; the curves and 200-edge circuits as configured.
    "circuit_discovery": ["data.params.n_prompts=8", "data.params.min_pairs=4"],
    "circuit_discovery_greater_than": ["data.params.n_prompts=8"],
    # GPT-2 XL's MEMIT config at GPT-2 small's shapes (its layers 13-17 do not exist there): the five
    # counterfact requests at layers 3-5, two target steps, the covariance over 8 rows of local text.
    "memit_edit_gpt2_xl": ["model=gpt2_small", "rome_data.params.name=json", "++rome_data.params.data_files={text}",
                           "++rome_data.params.streaming=false", "rome_data.params.max_sequences=8",
                           "covariance.layers=[3,4,5]", "memit.layers=[3,4,5]", "memit.steps=2"],
    # Its default model is toy_facts; GPT-2 small is its gpu-suite config (conf/attribution_setup/gpt2_small.yaml).
    # 24 rows of 128: 2,560 training tokens (5 steps of 512) for 12 transcoders, 512 held out; 2 prompts.
    "attribution_graph": ["model=gpt2_small", *_LOCAL_TEXT, "data.params.max_sequences=24",
                          "transcoder.training_tokens=2560", "transcoder.train_batch_size_tokens=512",
                          "transcoder.eval_tokens=512", "transcoder.log_every=2", "transcoder_eval.max_sequences=4",
                          "attribution.max_prompts=2", "attribution.max_feature_nodes=256",
                          "attribution.contexts_per_feature=2"],
    # Its Gemma config (conf/attribution_setup/gemma3_270m.yaml) on the rehearsal's Gemma-3-shaped model; the
    # transcoders from disk, SAELens's registry loader needing the network (interp_pipeline/rehearsal/gemma3.py).
    # 4 rows of 64 tokens (the store's contexts; 2 for the evaluation), one prompt, 32 feature nodes: ~30 s.
    "attribution_graph_gemma3_270m": ["model=gemma3_270m", *_LOCAL_TEXT, "data.params.max_sequences=4",
                                      "data.params.seq_len=64", "cache.batch_size_prompts=4", "transcoder_source.release=null",
                                      "transcoder_source.sae_id=null", "transcoder_source.path='{transcoders}/layer_{{layer}}'",
                                      "transcoder_eval.max_sequences=2", "attribution.max_prompts=1",
                                      "attribution.max_feature_nodes=32", "attribution.contexts_per_feature=2"],
}

# Entries named otherwise than the experiment they run (a second model's config of one experiment).
EXPERIMENT_OF = {"attribution_graph_gemma3_270m": "attribution_graph", "ioi_patching_bridge": "ioi_patching"}


def overrides_for(experiment: str, text_file: str) -> list[str]:
    """The command-line overrides of one rehearsal: the experiment, the rehearsal mode, and its own.
    ``{transcoders}``: the cache's transcoder folder (hf_cache.transcoders_dir, beside the text's folder)."""
    from pathlib import Path

    from interp_pipeline.rehearsal.hf_cache import transcoders_dir

    places = {"text": text_file, "transcoders": str(transcoders_dir(Path(text_file).parent.parent))}
    return [f"+experiment={EXPERIMENT_OF.get(experiment, experiment)}", "runner.rehearsal=true",
            *(o.format(**places) for o in REHEARSALS[experiment])]
