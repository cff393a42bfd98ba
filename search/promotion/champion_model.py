"""The code MLflow logs for the champion (models from code): it names the model object and nothing else.

Loading a champion runs this file; everything the model needs comes from its artifacts (config, corpus, index).
"""

from mlflow.models import set_model

from ragsweep.search.promotion.champion import RagChampion

set_model(RagChampion())
