-- The program's durable state. Applied at every start; every statement is idempotent.
-- Times are Unix milliseconds.

-- Notify data: what an event stored for the app to pull with get_callback_data.
-- `data` is NULL once the entry was taken or has expired: the row stays as a tombstone until
-- `forget_ms`, so a late reader learns "already taken" or "expired" instead of "not found".
CREATE TABLE IF NOT EXISTS notify (
    notify_id  TEXT PRIMARY KEY,
    corp_id    TEXT NOT NULL,
    data       TEXT,
    bytes      INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    taken_ms   INTEGER,
    forget_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS notify_by_forget ON notify (forget_ms);
CREATE INDEX IF NOT EXISTS notify_live_by_expiry ON notify (expires_ms) WHERE data IS NOT NULL;

-- Jobs: async ability calls and event follow-ups. `dedupe_key` makes a redelivered request or
-- event a no-op. `phase`: run → report → done | failed (events skip report). `claimed` is 1 while a
-- worker holds the row; every start clears it, so interrupted jobs resume.
CREATE TABLE IF NOT EXISTS jobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL,
    dedupe_key     TEXT UNIQUE,
    ctx            TEXT NOT NULL,
    payload        TEXT NOT NULL,
    progress       TEXT,
    phase          TEXT NOT NULL,
    claimed        INTEGER NOT NULL DEFAULT 0,
    runs           INTEGER NOT NULL DEFAULT 0,
    attempts       INTEGER NOT NULL DEFAULT 0,
    report_errcode INTEGER,
    report_result  TEXT,
    next_ms        INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL,
    finished_ms    INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (next_ms, id) WHERE phase IN ('run', 'report');
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_ms) WHERE finished_ms IS NOT NULL;

-- Cursors of the SDK listings the program follows (sync_msg, get_hit_msg_list), per corp.
CREATE TABLE IF NOT EXISTS cursors (
    corp_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (corp_id, name)
);
