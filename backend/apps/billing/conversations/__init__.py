"""Conversations for people: the REST API (`api.py`), the staff inbox (`inbox_views.py`), the
thread they both show (`thread.py`) and its live updates (`live.py`, `consumers.py`).

Conversation state lives in `apps.chat` (`services/conversations.py`); sending an answer is
billing's (`services/reply_sending.py`). See docs/conversations.md.
"""
