"""Offline scoring of UCI rows through the very processor the worker runs (no Kafka)."""

from __future__ import annotations

import orjson
import pandas as pd

from models.intent import IntentModel
from models.persona import PersonaModel
from models.training.uci import prefix, sessions
from stream.pages import PageTable, page_record
from stream.persona_sync import SharedPersona
from stream.scoring import Scorer
from stream.sessions import Record, SessionProcessor


def score_uci(frame: pd.DataFrame, intent: IntentModel, persona: PersonaModel | None = None,
              fraction: float = 1.0) -> pd.DataFrame:
    """``session_id, intent_score, persona`` after each row's last event (or its ``fraction``)."""
    table = PageTable(prior=intent.page_prior)
    scorer = Scorer(intent, SharedPersona(persona or PersonaModel.default()), top_features=0)
    processor = SessionProcessor(scorer=scorer, pages=table)
    states: dict[bytes, bytes] = {}
    rows = []
    for session in sessions(frame):
        session = prefix(session, fraction) if fraction < 1 else session
        for stats in session.pages:
            table.apply(*page_record(stats))
        key = session.session_id.encode()
        records = [Record(key, orjson.dumps(e), "offline", 0, i) for i, e in enumerate(session.events)]
        result = processor.process(records, states)
        final = result.persona_events()[-1]
        rows.append((final.session_id, final.intent_score, final.persona))
    return pd.DataFrame(rows, columns=["session_id", "intent_score", "persona"])
