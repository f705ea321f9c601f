"""Run cache_activations in this process and, on request, die by SIGKILL partway.

Used by test_cache_stage.py in a subprocess: KILL_AT=put:K kills when the producer hands
chunk K to the writer thread (earlier chunks may or may not be on disk); KILL_AT=flag:K
kills after every array of chunk K is written but before its chunk_done flag.
Arguments: STORE [SHARD_INDEX NUM_SHARDS].
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from interp_pipeline.activations import writer
from interp_pipeline.stages.cache_activations import cache_activations
from tests.support.models import CACHE_PARAMS, tiny_model_and_tokens


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the writer's lines (a shard that waits)
    kill_at = os.environ.get("KILL_AT")
    if kill_at:
        where, chunk = kill_at.split(":")
        target = int(chunk)
        if where == "put":
            original_put = writer.ChunkWriter.put

            def put(self, index, arrays):
                if index == target:
                    die()
                original_put(self, index, arrays)

            writer.ChunkWriter.put = put
        else:
            original_flag = writer.ChunkWriter._flag_done

            def flag(self, index):
                if index == target:
                    die()
                original_flag(self, index)

            writer.ChunkWriter._flag_done = flag
    model, tokens = tiny_model_and_tokens()
    shard = dict(shard_index=int(sys.argv[2]), num_shards=int(sys.argv[3])) if len(sys.argv) > 3 else {}
    cache_activations(model, tokens, store=sys.argv[1], **CACHE_PARAMS, **shard)


if __name__ == "__main__":
    main()
