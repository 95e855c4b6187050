//! The schema, as a list of forward migrations. `PRAGMA user_version` holds how many have run.
//! A migration is never edited once released: a change is a new entry at the end.

/// The schema version from which every delete overwrites what it deletes (`secure_delete`): a
/// database written by an earlier version is rewritten once when it is migrated, so that what
/// that version deleted is gone from the file too.
pub const SECURE_DELETE_SINCE: usize = 10;

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
    // 5: time you can trust (steady time, held taps, boots), and counts kept as events change,
    // so that `status` reads a few rows instead of every event.
    r#"
    -- Times the service counts in steady time (see `clock`), which carries on from the wall time
    -- at this migration: the values stored until now keep their meaning.
    ALTER TABLE events RENAME COLUMN next_attempt_at_ms TO next_attempt_steady_ms;
    ALTER TABLE events RENAME COLUMN unknown_since_ms TO unknown_since_steady_ms;
    ALTER TABLE accounts RENAME COLUMN resolved_at_ms TO resolved_steady_ms;
    ALTER TABLE visits RENAME COLUMN last_event_at_ms TO last_event_steady_ms;
    ALTER TABLE visits ADD COLUMN checked_in_steady_ms INTEGER;
    UPDATE visits SET checked_in_steady_ms = checked_in_at_ms;

    -- Each run of the service registers its boot: where steady time stood, the last time the
    -- service was seen running in it, and its latest trusted wall reading.
    CREATE TABLE boots (
        id               INTEGER PRIMARY KEY,
        boot_id          TEXT    NOT NULL UNIQUE,
        offset_ms        INTEGER NOT NULL,
        start_steady_ms  INTEGER NOT NULL,
        seen_steady_ms   INTEGER NOT NULL,
        anchor_wall_ms   INTEGER,
        anchor_steady_ms INTEGER
    );

    -- The tap's boot and steady time, and how its wall time was found: trusted at the tap,
    -- untrusted (held until it is known), restamped (from a trusted reading in the same boot)
    -- or approximate (from a boot that ended before its clock was trusted).
    ALTER TABLE events ADD COLUMN boot INTEGER;
    ALTER TABLE events ADD COLUMN tapped_steady_ms INTEGER;
    ALTER TABLE events ADD COLUMN clock TEXT NOT NULL DEFAULT 'trusted'
        CHECK (clock IN ('trusted', 'untrusted', 'restamped', 'approximate'));
    UPDATE events SET tapped_steady_ms = tapped_at_ms;

    -- The clock's trust as the service last saw it, for `status`.
    CREATE TABLE clock_state (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        trusted         INTEGER,
        source          TEXT,
        detail          TEXT,
        since_wall_ms   INTEGER,
        since_steady_ms INTEGER
    );
    INSERT INTO clock_state (id) VALUES (1);

    -- Live taps no longer go first by age (see `claim_due`).
    DROP INDEX events_open_tapped;
    -- Held taps, for placing them once the clock is trusted.
    CREATE INDEX events_held ON events (id) WHERE clock = 'untrusted';
    -- What `status` reads, each without a scan of the events.
    CREATE INDEX events_pending_steady ON events (tapped_steady_ms) WHERE state = 'pending';
    CREATE INDEX events_rejected ON events (last_status, last_error_code) WHERE state = 'rejected';
    CREATE INDEX visits_inside ON visits (tag) WHERE inside = 1;

    -- Counts kept by triggers in the same transactions as the rows they count: events by state,
    -- automatic check-outs, events by how their time was found, and taps lost (written by the
    -- recorder).
    CREATE TABLE tallies (
        name TEXT    PRIMARY KEY,
        n    INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO tallies (name, n) SELECT 'state:' || state, COUNT(*) FROM events GROUP BY state;
    INSERT INTO tallies (name, n) SELECT 'automatic', COUNT(*) FROM events WHERE automatic;
    CREATE TRIGGER events_tally_insert AFTER INSERT ON events BEGIN
        INSERT INTO tallies (name, n) VALUES ('state:' || NEW.state, 1)
            ON CONFLICT (name) DO UPDATE SET n = n + 1;
        INSERT INTO tallies (name, n) SELECT 'automatic', 1 WHERE NEW.automatic
            ON CONFLICT (name) DO UPDATE SET n = n + 1;
        INSERT INTO tallies (name, n) SELECT 'clock:' || NEW.clock, 1 WHERE NEW.clock <> 'trusted'
            ON CONFLICT (name) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER events_tally_state AFTER UPDATE OF state ON events
    WHEN OLD.state <> NEW.state BEGIN
        UPDATE tallies SET n = n - 1 WHERE name = 'state:' || OLD.state;
        INSERT INTO tallies (name, n) VALUES ('state:' || NEW.state, 1)
            ON CONFLICT (name) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER events_tally_clock AFTER UPDATE OF clock ON events
    WHEN OLD.clock <> NEW.clock BEGIN
        UPDATE tallies SET n = n - 1 WHERE name = 'clock:' || OLD.clock;
        INSERT INTO tallies (name, n) SELECT 'clock:' || NEW.clock, 1 WHERE NEW.clock <> 'trusted'
            ON CONFLICT (name) DO UPDATE SET n = n + 1;
    END;
    -- One key lookup per count: pruning deletes rows by the hundred.
    CREATE TRIGGER events_tally_delete AFTER DELETE ON events BEGIN
        UPDATE tallies SET n = n - 1 WHERE name = 'state:' || OLD.state;
        UPDATE tallies SET n = n - 1 WHERE OLD.clock <> 'trusted' AND name = 'clock:' || OLD.clock;
        UPDATE tallies SET n = n - 1 WHERE OLD.automatic AND name = 'automatic';
    END;
    "#,
    // 6: Wellpass (corporate-fitness) admissions.
    r#"
    -- The member's membership type, beside the account: Wellpass members are admitted first.
    ALTER TABLE accounts ADD COLUMN membership_type TEXT;

    -- What became of a check-in's admission, and EGYM's reason for a refusal.
    ALTER TABLE events ADD COLUMN admission TEXT
        CHECK (admission IN ('admitted', 'admitted_late', 'refused', 'refused_late', 'skipped'));
    ALTER TABLE events ADD COLUMN admission_reason TEXT;

    CREATE TRIGGER events_tally_admission AFTER UPDATE OF admission ON events
    WHEN NEW.admission IS NOT NULL AND OLD.admission IS NULL BEGIN
        INSERT INTO tallies (name, n)
            VALUES ('admission:' || NEW.admission || COALESCE(':' || NEW.admission_reason, ''), 1)
            ON CONFLICT (name) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER events_tally_admission_delete AFTER DELETE ON events
    WHEN OLD.admission IS NOT NULL BEGIN
        UPDATE tallies SET n = n - 1
        WHERE name = 'admission:' || OLD.admission || COALESCE(':' || OLD.admission_reason, '');
    END;
    "#,
    // 7: the front-desk screen.
    r#"
    -- The service's parts that `status` reports beside the events (the screen's server).
    CREATE TABLE service (
        part          TEXT    PRIMARY KEY,
        state         TEXT    NOT NULL,
        changed_at_ms INTEGER
    ) WITHOUT ROWID;

    -- Refused Wellpass admissions, newest first, for the staff page.
    CREATE INDEX events_refused ON events (id) WHERE admission IN ('refused', 'refused_late');
    "#,
    // 8: taps that wait only for a card's enrolment. A tag's open events go out in order, so
    // every pending event behind an event EGYM does not know (`unknown_tag`) waits for that card
    // to be enrolled, or for the unknown-tag window to end: it is not pending delivery, and must
    // not count as a delivery delay. Triggers keep the mark and its count in the same
    // transactions as the rows change; a mark is only ever on a pending event.
    r#"
    ALTER TABLE events ADD COLUMN behind_unknown INTEGER NOT NULL DEFAULT 0;
    UPDATE events SET behind_unknown = 1
    WHERE state = 'pending' AND EXISTS (
        SELECT 1 FROM events AS unknown
        WHERE unknown.tag = events.tag AND unknown.state IN ('pending', 'unknown_tag')
          AND unknown.state = 'unknown_tag' AND unknown.id < events.id);
    INSERT INTO tallies (name, n) SELECT 'waiting:enrolment', COUNT(*) FROM events
        WHERE behind_unknown = 1;

    -- A tap recorded behind an event of its tag that EGYM does not know.
    CREATE TRIGGER events_behind_unknown_insert AFTER INSERT ON events
    WHEN NEW.state = 'pending' AND EXISTS (
        SELECT 1 FROM events
        WHERE tag = NEW.tag AND state IN ('pending', 'unknown_tag') AND state = 'unknown_tag'
          AND id < NEW.id)
    BEGIN
        UPDATE events SET behind_unknown = 1 WHERE id = NEW.id;
    END;
    -- EGYM does not know the tag: the tag's later taps wait for its enrolment.
    CREATE TRIGGER events_behind_unknown_start AFTER UPDATE OF state ON events
    WHEN NEW.state = 'unknown_tag' AND OLD.state <> 'unknown_tag'
    BEGIN
        UPDATE events SET behind_unknown = 1
        WHERE tag = NEW.tag AND state IN ('pending', 'unknown_tag') AND state = 'pending'
          AND id > NEW.id AND behind_unknown = 0;
    END;
    -- Delivered once the card was enrolled, or given up: the taps behind it are pending
    -- delivery again (unless another unknown event of the tag is still ahead of them).
    CREATE TRIGGER events_behind_unknown_end AFTER UPDATE OF state ON events
    WHEN OLD.state = 'unknown_tag' AND NEW.state <> 'unknown_tag'
    BEGIN
        UPDATE events SET behind_unknown = 0
        WHERE tag = OLD.tag AND state IN ('pending', 'unknown_tag') AND id > OLD.id
          AND behind_unknown = 1
          AND NOT EXISTS (
              SELECT 1 FROM events AS unknown
              WHERE unknown.tag = OLD.tag AND unknown.state IN ('pending', 'unknown_tag')
                AND unknown.state = 'unknown_tag' AND unknown.id < events.id);
    END;
    -- A marked event that leaves `pending` no longer waits.
    CREATE TRIGGER events_behind_unknown_leave AFTER UPDATE OF state ON events
    WHEN OLD.state = 'pending' AND NEW.state <> 'pending' AND NEW.behind_unknown = 1
    BEGIN
        UPDATE events SET behind_unknown = 0 WHERE id = NEW.id;
    END;
    CREATE TRIGGER events_tally_behind_unknown AFTER UPDATE OF behind_unknown ON events
    WHEN OLD.behind_unknown <> NEW.behind_unknown
    BEGIN
        INSERT INTO tallies (name, n)
            VALUES ('waiting:enrolment', CASE WHEN NEW.behind_unknown = 1 THEN 1 ELSE -1 END)
            ON CONFLICT (name) DO UPDATE SET n = n + excluded.n;
    END;
    CREATE TRIGGER events_tally_behind_unknown_delete AFTER DELETE ON events
    WHEN OLD.behind_unknown = 1
    BEGIN
        UPDATE tallies SET n = n - 1 WHERE name = 'waiting:enrolment';
    END;

    -- The oldest tap pending delivery, for `status`: those waiting for an enrolment left out.
    DROP INDEX events_pending_steady;
    CREATE INDEX events_pending_steady ON events (tapped_steady_ms)
        WHERE state = 'pending' AND behind_unknown = 0;
    "#,
    // 9: the staff page: first Wellpass visits, today's admissions, who is in the club.
    r#"
    -- EGYM's `firstAdmission`: the member's first Wellpass visit, which needs an introductory
    -- session.
    ALTER TABLE events ADD COLUMN first_admission INTEGER NOT NULL DEFAULT 0;
    -- Admissions granted by the tap's time (what the gym is paid for, once per member and day),
    -- and first visits by card: each read from an index, not a scan of the events.
    CREATE INDEX events_admitted ON events (tapped_at_ms, tag)
        WHERE admission IN ('admitted', 'admitted_late');
    CREATE INDEX events_first_admission ON events (tag, tapped_at_ms) WHERE first_admission = 1;
    -- The members in the club, by when they came in.
    CREATE INDEX visits_inside_since ON visits (checked_in_at_ms) WHERE inside = 1;
    "#,
    // 10: privacy. The pruner finds finished events past their retention through an index kept
    // in the order it deletes them (their tap time), so each of its batches writes few pages;
    // a tap's own commit writes none of it. (Erasure and export find a card's events by
    // reading the table on a connection of their own, off the database thread: an index by
    // card would be written all over at every prune.)
    r#"
    -- Finished events by state and tap time: the pruner's batches.
    CREATE INDEX events_finished_tapped ON events (state, tapped_at_ms)
        WHERE state IN ('delivered', 'rejected');
    -- Events of cards EGYM does not know, for `status`.
    CREATE INDEX events_unknown ON events (id) WHERE state = 'unknown_tag';
    "#,
];
