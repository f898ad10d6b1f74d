"""Migration 006, as shipped (never edited): m006_traces."""

from __future__ import annotations

from agent.log.migrations.base import Connection
from agent.log.migrations.sql import RUN_DAY


def m006_traces(db: Connection) -> None:
    """The trace of every LLM call: what was sent and the reply as written (issue 13)."""
    # A run sends the same system prompt on every step: kept once, by the sha256 of its text.
    db.execute(
        """
        CREATE TABLE system_prompts (
            hash       VARCHAR PRIMARY KEY,   -- sha256 of the text, hex
            text       VARCHAR NOT NULL,
            first_seen TIMESTAMPTZ NOT NULL
        )
        """
    )
    # One row per llm_calls row whose content was kept, joined on (run_id, seq, idx): usage and
    # timing stay in llm_calls (with LOG_PROMPTS=0 no row is written at all). Large VARCHAR/JSON
    # columns are compressed by DuckDB at checkpoint (FSST, dictionary): a trace takes about half
    # its JSON size on disk (bench/bench_traces.py). Screenshots are never inlined: an image part
    # is {"type": "image", "screenshot_step": n}.
    db.execute(
        """
        CREATE TABLE llm_traces (
            run_id            BIGINT NOT NULL,
            seq               INTEGER NOT NULL,
            step              INTEGER NOT NULL,
            idx               INTEGER NOT NULL,
            system_hash       VARCHAR,            -- system_prompts.hash (NULL: no system message, or not logged)
            messages_json     JSON,               -- the messages after the system one, as sent
            tools             VARCHAR[],          -- the tools offered, by name
            reply_text        VARCHAR,            -- the model's text as written
            tool_calls_json   JSON,               -- [{id, name, arguments}]: arguments as the model wrote them
            observation_start INTEGER,            -- where the page observation sits in the last message
            observation_end   INTEGER,
            prompt_chars      INTEGER NOT NULL    -- characters sent (system prompt + messages, no images)
        )
        """
    )
    # Every call, its content when it was kept (`logged`): a call of a run from before traces, or
    # made with LOG_PROMPTS=0, still shows its usage, latency and finish reason.
    db.execute(
        f"""
        CREATE VIEW v_llm_traces AS
        SELECT c.run_id, c.seq, c.step, c.idx, c.purpose, c.provider, c.model, c.started_at, c.latency_ms,
               c.input_tokens, c.output_tokens, c.cost_usd, c.finish_reason, c.error,
               t.run_id IS NOT NULL AS logged, t.prompt_chars, p.text AS system_prompt, t.system_hash,
               t.messages_json, t.tools, t.reply_text, t.tool_calls_json, t.observation_start, t.observation_end,
               r.model AS run_model, r.status AS run_status, {RUN_DAY} AS day
        FROM llm_calls c
        JOIN runs r ON r.id = c.run_id
        LEFT JOIN llm_traces t ON t.run_id = c.run_id AND t.seq = c.seq AND t.idx = c.idx
        LEFT JOIN system_prompts p ON p.hash = t.system_hash
        """
    )
