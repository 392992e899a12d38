"""Session personas: online River clustering of finished sessions into named, stable segments.

Pure package (no Kafka). The stream computes :func:`persona_features` from a visit's
:class:`~models.features.SessionState` and its intent score, asks a :class:`PersonaModel` for an
:class:`Assignment`, and teaches the model with finished sessions.

- :mod:`~models.persona.features`: the bounded persona features (:data:`FEATURES`, :data:`BOUNDS`, :data:`WEIGHTS`)
- :mod:`~models.persona.naming`: names for centroids (:data:`ARCHETYPES`, :data:`REQUIRES`, :func:`rule_names`)
- :mod:`~models.persona.moments`: scaler moments and their exact combination
- :mod:`~models.persona.model`: the estimator, :class:`PersonaModel`, and its snapshots
- :mod:`~models.persona.merge`: folding several workers' learning into one shared model

Workers: every worker assigns with the same shared model and learns into its own
:meth:`PersonaModel.learner`; :meth:`PersonaModel.absorb` folds the learners' progress into the next
shared model, which every worker loads (see :mod:`stream.persona_sync`). ``version`` is a digest of
everything that decides an assignment.
"""

from models.persona.features import BOUNDS, FEATURES, WEIGHTS, persona_features
from models.persona.model import ARTIFACT, Assignment, PersonaModel
from models.persona.naming import ARCHETYPES, HIGH_INTENT, REQUIRES, UNASSIGNED, rule_names

__all__ = ["ARCHETYPES", "ARTIFACT", "BOUNDS", "FEATURES", "HIGH_INTENT", "REQUIRES", "UNASSIGNED", "WEIGHTS",
           "Assignment", "PersonaModel", "persona_features", "rule_names"]
