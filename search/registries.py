"""The named choices of a search: LLM engines, samplers, schedulers and selection rules.

Contract: each registry here is the only list of its names. The config validates against it, the command line
offers its names, and ``docs/config.md`` shows its table. Targets are ``"module:attribute"`` strings imported on
first use, so reading a name (``ragsweep validate``, ``--help``) loads neither Ray nor an engine. Retrievers and
rerankers are registered in :mod:`ragsweep.pipelines.retrieve` and :mod:`ragsweep.pipelines.rerank`; built-in
judges in :mod:`ragsweep.judges.builtin`.
"""

from __future__ import annotations

from typing import Any

from ragsweep.pipelines.base.registry import Registry

_S = "ragsweep.search"

# An engine's target is the server class that launches it (None: an endpoint someone else runs).
ENGINES: Registry[Any] = Registry("LLM engine")
ENGINES.add(
    "llama.cpp",
    "llama-cpp-python's OpenAI-compatible server on CPU (the bundled SmolLM2 by default)",
    f"{_S}.serving.engines:LlamaCppServer",
    default_gpus=0.0,
    startup_s=180.0,
)
ENGINES.add(
    "vllm",
    "vLLM's OpenAI-compatible server on GPU nodes (pip install 'ragsweep[gpu]')",
    f"{_S}.serving.engines:VllmServer",
    default_gpus=1.0,
    startup_s=900.0,  # vLLM's own engine default: a cold node reads the weights, then captures CUDA graphs
)
ENGINES.add(
    "external", "an OpenAI-compatible endpoint someone else runs, at base_url", None, default_gpus=0.0, startup_s=180.0
)

# A sampler's target builds the Optuna sampler from the config; multi: it handles a cost objective (Pareto).
SAMPLERS: Registry[Any] = Registry("sampler")
SAMPLERS.add(
    "tpe",
    "Optuna's TPE, multivariate and grouped (conditional keys), constant liar for parallel trials",
    f"{_S}.searcher:tpe_sampler",
    multi=True,
)
SAMPLERS.add("random", "uniform random configurations", f"{_S}.searcher:random_sampler", multi=True)
SAMPLERS.add(
    "grid", "every configuration of a finite space, in seeded random order", f"{_S}.searcher:grid_sampler", multi=True
)
SAMPLERS.add(
    "nsga2",
    "NSGA-II for searches with a cost objective (objective.cost)",
    f"{_S}.searcher:nsga2_sampler",
    multi=True,
    needs_cost=True,
)

# A scheduler's target builds the Ray Tune scheduler (None: run every trial to the end).
SCHEDULERS: Registry[Any] = Registry("scheduler")
SCHEDULERS.add(
    "asha", "stop weak trials early by running means at rungs of questions answered", f"{_S}.schedulers:asha"
)
SCHEDULERS.add(
    "paired",
    "stop a trial whose per-question scores are significantly worse than the best trial's on the "
    "same questions (one-sided Wilcoxon)",
    f"{_S}.schedulers:paired",
)
SCHEDULERS.add("fifo", "run every trial on all its questions", f"{_S}.schedulers:fifo")

# How the winner is picked among the finalists confirmed on held-out questions.
SELECTION_RULES: Registry[None] = Registry("selection rule")
SELECTION_RULES.add(
    "cheapest_tied",
    "among finalists statistically tied with the best held-out objective (paired "
    "bootstrap), the cheapest (tokens per question, then p95 latency)",
)
SELECTION_RULES.add("best", "the highest held-out objective")
