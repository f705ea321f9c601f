"""``python -m interp_pipeline.rehearsal [EXPERIMENT ...]``: build the rehearsal's Hugging Face cache
and run GPT-2 experiments against it offline, in rehearsal mode, in this one process.

The cache's variables are set before anything imports huggingface_hub (it reads them once, at
import), so TransformerLens, transformers and SAELens see only that cache, as a user's process
sees theirs. Exit status 0 when every experiment exited 0; a JSON summary (experiment, exit
status, seconds) goes to ``--summary`` when given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from interp_pipeline.common.exit_status import EXIT_FAILED
from interp_pipeline.common.paths import default_outputs_dir
from interp_pipeline.rehearsal.experiments import REHEARSALS, overrides_for


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m interp_pipeline.rehearsal", description=(
        "Build the rehearsal's Hugging Face cache (a narrow GPT-2 of random weights with GPT-2's real "
        "tokenizer, a random gpt2-small-res-jb SAE) and run GPT-2 experiments against it offline, "
        "with runner.rehearsal=true."))
    parser.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                        help=f"experiments to rehearse (default: all of {', '.join(REHEARSALS)})")
    parser.add_argument("--hf-home", type=Path, default=None,
                        help="the cache directory to build or reuse (default: <outputs>/rehearsal/hf_home)")
    parser.add_argument("--summary", type=Path, default=None, help="write {experiment: {status, seconds}, preflight: {...}} here")
    arguments = parser.parse_args(argv)
    unknown = [e for e in arguments.experiments if e not in REHEARSALS]
    if unknown:
        parser.error(f"no rehearsal for {', '.join(unknown)} (known: {', '.join(REHEARSALS)})")
    return arguments


def rehearse(experiment: str, text_file: str) -> int:
    """Compose and run one experiment here, as the CLI would; its exit status."""
    from interp_pipeline.experiments.compose import compose
    from interp_pipeline.experiments.run import Invocation, launch

    overrides = overrides_for(experiment, text_file)
    cfg = compose(overrides)
    output_dir = Path(cfg.paths.outputs) / "rehearsal" / "runs" / experiment
    return launch(cfg, Invocation(experiment=experiment, output_dir=output_dir, overrides=overrides[1:])).status


def preflight_shape() -> dict[str, int]:
    """What the runner's pre-flight reads of model=gpt2_small without its weights (models/shape.py:
    TransformerLens's config conversion and the tokenizer, both from the cache); zeros when it cannot."""
    from interp_pipeline.models.config import ModelConfig
    from interp_pipeline.models.shape import shape_of_model

    shape = shape_of_model(ModelConfig(source="tl", name="gpt2-small"))
    if shape is None:
        return {"n_layers": 0, "n_heads": 0, "d_model": 0, "d_vocab": 0, "tokenizer_vocab": 0}
    return {"n_layers": shape.n_layers, "n_heads": shape.n_heads, "d_model": shape.d_model, "d_vocab": shape.d_vocab,
            "tokenizer_vocab": len(shape.tokenizer) if shape.tokenizer is not None else 0}


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    hf_home = (arguments.hf_home or default_outputs_dir() / "rehearsal" / "hf_home").resolve()
    from interp_pipeline.rehearsal.hf_cache import offline_environment, text_file

    os.environ.update(offline_environment(hf_home))
    if "huggingface_hub" in sys.modules:
        raise RuntimeError("huggingface_hub was imported before the rehearsal's HF_HOME was set")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("interp_pipeline")

    from interp_pipeline.rehearsal.hf_cache import build

    started = time.perf_counter()
    info = build(hf_home)
    log.info("rehearsal cache: %s (GPT-2 d_model %d, %d layers, %d heads; built or reused in %.1f s)",
             hf_home, info["d_model"], info["model"]["n_layers"], info["model"]["n_heads"],
             time.perf_counter() - started)

    preflight = preflight_shape()
    log.info("pre-flight sees gpt2-small in the cache: %s", preflight)
    summary: dict[str, dict[str, float]] = {}
    for experiment in arguments.experiments or list(REHEARSALS):
        started = time.perf_counter()
        try:
            status = rehearse(experiment, str(text_file(hf_home)))
        except Exception:  # a config that does not compose, say: report it and rehearse the others
            log.exception("rehearsal %s failed outside its stages", experiment)
            status = EXIT_FAILED
        summary[experiment] = {"status": status, "seconds": round(time.perf_counter() - started, 2)}
        log.info("rehearsal %s: exit %d in %.1f s", experiment, status, summary[experiment]["seconds"])
    for experiment, row in summary.items():
        log.info("  %-22s exit %d  %7.1f s", experiment, row["status"], row["seconds"])
    if arguments.summary is not None:
        arguments.summary.write_text(json.dumps({**summary, "preflight": preflight}, indent=2))
    return 0 if all(row["status"] == 0 for row in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
