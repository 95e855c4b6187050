//! The schema, as a list of forward migrations. `PRAGMA user_version` holds how many have run.
//! A migration is never edited once released: a change is a new entry at the end.

pub const MIGRATIONS: &[&str] = &[
    // 1: the outbox, visit state and the tag cache.
    r#"
    CREATE TABLE events (
        id                 INTEGER PRIMARY KEY,
        reader             TEXT    NOT NULL,
        raw_id             TEXT    NOT NULL,
        tag                TEXT    NOT NULL,
        tag_format         TEXT,
        kind               TEXT    NOT NULL CHECK (kind IN ('checkin', 'checkout')),
        tapped_at_ms       INTEGER NOT NULL,
        recorded_at_ms     INTEGER NOT NULL,
        state              TEXT    NOT NULL DEFAULT 'pending'
                           CHECK (state IN ('pending', 'unknown_tag', 'delivered', 'rejected')),
        attempts           INTEGER NOT NULL DEFAULT 0,
        next_attempt_at_ms INTEGER NOT NULL,
        unknown_since_ms   INTEGER,
        account_id         TEXT,
        last_status        INTEGER,
        last_error_code    TEXT,
        last_error         TEXT,
        finished_at_ms     INTEGER
    );
    -- Open events by tag, oldest first: the head of each tag's queue, and its due time.
    CREATE INDEX events_open_by_tag ON events (tag, id) WHERE state IN ('pending', 'unknown_tag');
    CREATE INDEX events_open_due ON events (next_attempt_at_ms) WHERE state IN ('pending', 'unknown_tag');
    CREATE INDEX events_delivered_at ON events (finished_at_ms) WHERE state = 'delivered';

    CREATE TABLE visits (
        tag              TEXT    PRIMARY KEY,
        inside           INTEGER NOT NULL,
        last_event_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- account_id NULL: EGYM said no member has this tag (a negative answer, cached too).
    CREATE TABLE accounts (
        tag            TEXT    NOT NULL,
        tag_format     TEXT    NOT NULL,
        account_id     TEXT,
        resolved_at_ms INTEGER NOT NULL,
        PRIMARY KEY (tag, tag_format)
    ) WITHOUT ROWID;
    "#,
    // 2: what `gym-checkin status` shows besides the events: readers and delivery.
    r#"
    CREATE TABLE readers (
        name            TEXT    PRIMARY KEY,
        connected       INTEGER NOT NULL DEFAULT 0,
        changed_at_ms   INTEGER,
        last_read_at_ms INTEGER
    ) WITHOUT ROWID;

    -- One row: whether delivery is paused (the key is refused) and the last failure.
    CREATE TABLE delivery_state (
        id               INTEGER PRIMARY KEY CHECK (id = 1),
        paused_since_ms  INTEGER,
        pause_reason     TEXT,
        last_error       TEXT,
        last_error_at_ms INTEGER
    );
    INSERT INTO delivery_state (id) VALUES (1);

    -- Open events by tap time: live taps go ahead of a backlog.
    CREATE INDEX events_open_tapped ON events (tapped_at_ms)
        WHERE state IN ('pending', 'unknown_tag');
    "#,
    // 3: automatic check-outs.
    r#"
    ALTER TABLE visits ADD COLUMN checked_in_at_ms INTEGER;
    -- Where the tag was last read, so an automatic check-out is sent as the tap's would be.
    ALTER TABLE visits ADD COLUMN reader TEXT;
    ALTER TABLE visits ADD COLUMN raw_id TEXT;
    ALTER TABLE visits ADD COLUMN tag_format TEXT;
    -- A visit open before this version began with its last event, which was its check-in.
    UPDATE visits SET checked_in_at_ms = last_event_at_ms WHERE inside = 1;
    ALTER TABLE events ADD COLUMN automatic INTEGER NOT NULL DEFAULT 0;

    -- Open events in id order: the claim walks this and stops after a few rows, however many
    -- delivered events the table keeps.
    CREATE INDEX events_open_id ON events (id) WHERE state IN ('pending', 'unknown_tag');
    "#,
    // 4: the write that starts the write-ahead log over after a checkpoint (see `Log`).
    r#"
    CREATE TABLE maintenance (
        id                 INTEGER PRIMARY KEY CHECK (id = 1),
        checkpointed_at_ms INTEGER
    );
    INSERT INTO maintenance (id) VALUES (1);
    "#,
];
