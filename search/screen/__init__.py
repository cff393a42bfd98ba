"""The free evidence of a search: retrieval judged on every search question with no LLM call.

- :mod:`.retrieval`: one retrieval configuration's per-question span-gold metrics and the tokens of the context it
  sends, cached by its key (one computation per key per cache folder).
- :mod:`.front`: which retrieval configurations a search screens, the recall-versus-context-tokens Pareto front and
  its statistically distinct steps, and the candidates the LLM stage of a two-stage search tries.
- :mod:`.oracle`: the answer-quality ceiling of a generator and prompt given the gold passage as the only context.
"""
