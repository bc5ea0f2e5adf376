"""The demo's sizes and budgets, in one place (the stages, the generation stage and the benchmarks read them)."""

from __future__ import annotations

DEMO_SAMPLES = 256
DEMO_SIZE = 64
#: training time per tokenizer in the demo (the benchmark uses 110 s; the bound table says what this buys)
DEMO_TOKENIZER_SECONDS = 30.0
#: training time of the demo's tiny 4M (``benchmarks/train_world.py`` trains longer on a bigger store)
DEMO_TRAIN_SECONDS = 240.0
#: the demo's 4M: the official "tiny" recipe narrowed to what 2 CPU cores train in minutes
DEMO_MODEL = {"dim": 256, "encoder_depth": 4, "decoder_depth": 4, "num_heads": 4}
#: scenes at the end of the store that the 4M's training holds out (its validation set)
DEMO_VAL_SAMPLES = 32
#: held-out scenes the report shows (every target generated from their pixels, retrieval queries from them)
DEMO_SCENES = 3
#: of which the first this many also run the text -> global embedding -> RGB tokens chain
DEMO_CHAINS = 2
#: retrieval hits per query
DEMO_HITS = 5
#: stage 8's folder in the demo's output and its record (what the report reads)
GENERATION_DIR = "generation"
GENERATION_JSON = "generation.json"
#: labeling options of the demo (and the benchmarks on the synthetic world): teachers whose weights are not cached
#: run random-initialised (marked so everywhere), nothing is downloaded
DEMO_LABEL_OPTIONS = {"allow_random_teachers": True, "teacher_downloads": False}
#: draws fused per scene in the demo's ensembling row (the quality benchmark uses 10)
DEMO_ENSEMBLE = 4
