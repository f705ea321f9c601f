"""A Hugging Face cache directory (``HF_HOME``) in which GPT-2 and gpt2-small-res-jb "are cached".

What a user who once downloaded them has, at the rehearsal's size: ``hub/models--gpt2`` holds
a GPT-2 with the real vocabulary (GPT-2's tokenizer, from gpt2_tokenizer), context, layers and
heads, narrow (d_model 96 by default) and of random weights; ``hub/models--jbloom--GPT2-Small-
SAEs-Reformatted`` holds a random standard SAE at ``blocks.8.hook_resid_pre`` in SAELens's format
(cfg.json, sae_weights.safetensors, sparsity.safetensors, the files SAELens's loader fetches).
Both are laid out as huggingface_hub lays out its cache (blobs, snapshots/<commit> of links to
them, refs/main), so with ``HF_HOME`` pointing here and ``HF_HUB_OFFLINE=1`` the project's own
pre-flight and TransformerLens's and SAELens's own ``from_pretrained`` find them unchanged.

Also Gemma 3 270M's shape and Gemma Scope 2's transcoders (``hub/models--google--gemma-3-270m`` and
``transcoders/layer_L``: interp_pipeline.rehearsal.gemma3 says what is shrunk and why the transcoders
are read from disk, not through SAELens's registry).

Beside it, ``text/rehearsal.jsonl``: documents for the experiments whose data comes from the hub
(pile-10k, OpenWebText), handed to the same ``hf_dataset_tokens`` stage as a local json dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from interp_pipeline.rehearsal import gemma3
from interp_pipeline.rehearsal.gpt2_tokenizer import END_OF_TEXT, N_POSITIONS, gpt2_tokenizer

MODEL_REPO = "gpt2"
SAE_REPO = "jbloom/GPT2-Small-SAEs-Reformatted"  # gpt2-small-res-jb's repo_id in SAELens's registry
SAE_HOOK = "blocks.8.hook_resid_pre"
N_LAYERS, N_HEADS = 12, 12  # GPT-2 small's: every layer and head an expect key names exists
D_MODEL = 96                # 768 in GPT-2 small; narrow so a CPU rehearsal takes seconds
SAE_EXPANSION = 8           # gpt2-small-res-jb is 32x; the rehearsal needs the format, not the width
FIRING = 0.05               # each random latent fires on ~5% of tokens (L0 ~ 38 of 768)
VERSION = 3                 # bumped when what build() writes changes: older caches are rebuilt
DONE_FILE = "rehearsal.json"  # written last: a directory without it is incomplete and rebuilt


def _commit(directory: Path) -> str:
    """A snapshot's "commit": a sha1 over its files (not the hub's commit; the cache only needs 40 hex)."""
    digest = hashlib.sha1()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _as_hub_cache(files: Path, hub: Path, repo_id: str) -> Path:
    """Move the files of ``files`` into ``hub`` as huggingface_hub caches a repository; the snapshot's path."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    commit = _commit(files)
    snapshot = repo / "snapshots" / commit
    blobs = repo / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        blob = blobs / hashlib.sha256(path.read_bytes()).hexdigest()  # LFS blobs are named by sha256
        if not blob.exists():
            shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def _gpt2_files(directory: Path, d_model: int, seed: int, texts: list[str]) -> tuple[dict[str, Any], Any]:
    """Write the model and tokenizer; also return SAE_HOOK's activations on ``texts`` (for the SAE's biases)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = gpt2_tokenizer()
    eot = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    torch.manual_seed(seed)
    # n_ctx: transformers 5 dropped it from GPT2Config, but TransformerLens's conversion reads it
    # (the hub's gpt2 config.json has it).
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=N_POSITIONS, n_ctx=N_POSITIONS, n_embd=d_model,
                        n_layer=N_LAYERS, n_head=N_HEADS, bos_token_id=eot, eos_token_id=eot)
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    ids = _rows(tokenizer, texts, 8)
    with torch.no_grad():  # hidden_states[8] is the input to block 8: blocks.8.hook_resid_pre
        hidden = model(ids, output_hidden_states=True).hidden_states[int(SAE_HOOK.split(".")[1])]
    resid = hidden[:, 1:].reshape(-1, d_model)  # BOS left out, as SAELens's evals leave it out
    resid = resid - resid.mean(dim=-1, keepdim=True)  # TransformerLens centres the writing weights
    return {"d_model": d_model, "n_layers": N_LAYERS, "n_heads": N_HEADS, "d_vocab": len(tokenizer)}, resid


def _rows(tokenizer: Any, texts: list[str], n_rows: int) -> Any:
    """``n_rows`` rows of 128 tokens of ``texts``, each after an end-of-text (BOS) token."""
    import torch

    eot = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    stream = [token for text in texts for token in tokenizer(text, verbose=False).input_ids][:n_rows * 127]
    return torch.cat([torch.full((n_rows, 1), eot), torch.tensor(stream).reshape(n_rows, 127)], dim=1)


def _sae_files(directory: Path, resid: Any, seed: int) -> dict[str, Any]:
    """A random standard SAE at SAE_HOOK, as SAELens saves one, plus the sparsity file its hub loader
    fetches. Each latent's threshold is set on the model's own activations ``resid`` [tokens, d_in] so
    it fires on ~FIRING of them: L0 ~ FIRING * d_sae, live features for the dashboards, as a trained
    SAE has (an SAE of zero biases would fire on half the latents, one of fixed negative biases on none)."""
    import torch
    from safetensors.torch import save_file
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(seed)
    d_in = resid.shape[1]
    d_sae = SAE_EXPANSION * d_in
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu"))
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.W_enc.div_(sae.W_enc.norm(dim=0, keepdim=True))
        sae.W_dec.copy_(sae.W_enc.T)  # unit decoder rows, as trained SAEs have
        sae.b_dec.copy_(resid.mean(dim=0))
        pre = (resid - sae.b_dec) @ sae.W_enc
        sae.b_enc.copy_(-torch.quantile(pre, 1 - FIRING, dim=0))
    for key, value in {"model_name": "gpt2-small", "hook_name": SAE_HOOK, "context_size": 128,
                       "prepend_bos": True, "dataset_path": "Skylion007/openwebtext"}.items():
        setattr(sae.cfg.metadata, key, value)
    folder = directory / SAE_HOOK
    sae.save_model(folder)
    save_file({"sparsity": torch.full((d_sae,), -3.0)}, folder / "sparsity.safetensors")
    return {"d_in": d_in, "d_sae": d_sae, "hook": SAE_HOOK, "firing": FIRING}


def _documents() -> list[dict[str, str]]:
    """Text for the data stages: this package's source files and the README (English prose and code,
    ~140k GPT-2 tokens), deterministic and present wherever the package is."""
    from interp_pipeline.common.paths import PACKAGE_DIR

    sources = sorted(PACKAGE_DIR.rglob("*.py")) + [PACKAGE_DIR.parent / "README.md"]
    return [{"text": path.read_text()} for path in sources if path.is_file()]


def build(hf_home: Path, *, d_model: int = D_MODEL, seed: int = 0) -> dict[str, Any]:
    """Write the cache under ``hf_home`` (reused when complete); returns what rehearsal.json records."""
    hf_home = Path(hf_home)
    done = hf_home / DONE_FILE
    if done.is_file():
        info = json.loads(done.read_text())
        if info.get("d_model") == d_model and info.get("seed") == seed and info.get("version") == VERSION:
            return info
    if done.is_file():  # an older rehearsal cache: ours to replace
        shutil.rmtree(hf_home)
    elif hf_home.exists() and any(hf_home.iterdir()):
        # Never clear a directory this did not write: --hf-home may name someone's real HF_HOME.
        raise FileExistsError(f"{hf_home} is not empty and holds no {DONE_FILE}: not a rehearsal cache; "
                              f"name an empty or new directory")
    hub = hf_home / "hub"
    hub.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=hf_home) as work:
        model_files, sae_files = Path(work) / "gpt2", Path(work) / "sae"
        documents = _documents()
        model, resid = _gpt2_files(model_files, d_model, seed, [d["text"] for d in documents])
        sae = _sae_files(sae_files, resid, seed + 1)
        model_snapshot = _as_hub_cache(model_files, hub, MODEL_REPO)
        sae_snapshot = _as_hub_cache(sae_files, hub, SAE_REPO)
        gemma_folder = Path(work) / "gemma"
        gemma, mlp_in = gemma3.gemma_files(gemma_folder, gpt2_tokenizer(), seed + 2,
                                           _rows(gpt2_tokenizer(), [d["text"] for d in documents], 4))
        transcoders = gemma3.transcoder_files(transcoders_dir(hf_home), mlp_in, seed + 3)
        gemma_snapshot = _as_hub_cache(gemma_folder, hub, gemma3.MODEL_REPO)
    text = text_file(hf_home)
    text.parent.mkdir()
    text.write_text("".join(json.dumps(doc) + "\n" for doc in documents))
    info = {"version": VERSION, "d_model": d_model, "seed": seed, "model": model, "sae": sae, "text": str(text),
            "model_snapshot": str(model_snapshot), "sae_snapshot": str(sae_snapshot),
            "gemma": gemma, "gemma_transcoders": transcoders, "gemma_snapshot": str(gemma_snapshot)}
    done.write_text(json.dumps(info, indent=2))
    return info


def transcoders_dir(hf_home: Path) -> Path:
    """Gemma Scope 2's rehearsal transcoders, a folder per layer (layer_L)."""
    return Path(hf_home) / "transcoders"


def text_file(hf_home: Path) -> Path:
    return Path(hf_home) / "text" / "rehearsal.jsonl"


def offline_environment(hf_home: Path) -> dict[str, str]:
    """The variables a process needs to see only this cache (set before huggingface_hub is imported)."""
    hf_home = Path(hf_home).resolve()
    return {"HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub"), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "HF_DATASETS_CACHE": str(hf_home / "datasets")}
