#!/usr/bin/env bash
# Set up .venv for this checkout: the CPU build of torch first, then the project with
# its dev extras (editable). Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
# torch before anything that depends on it: asked for later, pip would resolve a
# multi-GB CUDA build. Override TORCH_SPEC for another build (e.g. on a GPU machine).
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "$TORCH_SPEC"
.venv/bin/python -m pip install --quiet -e ".[dev]"

# GPT-2's real tokenizer, offline (interp_pipeline/rehearsal/gpt2_tokenizer.py): the BPE ranks
# openai-whisper's source distribution ships as whisper/assets/gpt2.tiktoken, from a pinned sdist
# whose sha256 pip checks, the extracted file's sha256 checked again. Skipped when already there.
WHISPER_SDIST="openai-whisper==20250625"
WHISPER_SDIST_SHA256="37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96"
GPT2_TIKTOKEN_SHA256="306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
GPT2_TIKTOKEN=.cache/gpt2.tiktoken
if ! echo "$GPT2_TIKTOKEN_SHA256  $GPT2_TIKTOKEN" | sha256sum --check --status 2>/dev/null; then
    mkdir -p .cache
    download="$(mktemp -d)"
    trap 'rm -rf "$download"' EXIT
    echo "$WHISPER_SDIST --hash=sha256:$WHISPER_SDIST_SHA256" > "$download/requirements.txt"
    .venv/bin/python -m pip download --quiet --no-deps --no-binary :all: --require-hashes \
        -r "$download/requirements.txt" -d "$download"
    .venv/bin/python - "$download" "$GPT2_TIKTOKEN" <<'PY'
import glob, sys, tarfile
(sdist,) = glob.glob(f"{sys.argv[1]}/openai_whisper-*.tar.gz")
with tarfile.open(sdist) as archive:
    member = next(m for m in archive.getmembers() if m.name.endswith("/whisper/assets/gpt2.tiktoken"))
    with archive.extractfile(member) as source, open(sys.argv[2] + ".part", "wb") as target:
        target.write(source.read())
PY
    echo "$GPT2_TIKTOKEN_SHA256  $GPT2_TIKTOKEN.part" | sha256sum --check --quiet
    mv "$GPT2_TIKTOKEN.part" "$GPT2_TIKTOKEN"
fi
