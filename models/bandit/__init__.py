"""Learning which action works: Thompson sampling over each persona's candidate actions.

:mod:`models.bandit.thompson` is the estimator (Beta posteriors, propensities, mergeable counts);
:mod:`models.bandit.policy` decides per visit (holdout, stickiness, seeded draws, rewards).
"""

from models.bandit.policy import ActionPolicy, Decision, decision_id, settle
from models.bandit.thompson import BetaBandit, Handover

__all__ = ["ActionPolicy", "BetaBandit", "Decision", "Handover", "decision_id", "settle"]
