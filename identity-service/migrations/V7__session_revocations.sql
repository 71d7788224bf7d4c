-- Revoked sessions, in the order followers (clinic-service, through WatchRevocations) read them.
--
-- Positions come from the one row of `revocation_log_head`, incremented inside each revoking
-- transaction (`UPDATE ... SET position = position + n RETURNING position`). That row stays
-- locked until the transaction ends, so the next revoking transaction gets its numbers only
-- after this one committed (or rolled back, which undoes its increment: no gap): positions
-- become visible in order, and a reader that has seen position 8 can never be handed a 7 that
-- commits later (as a plain sequence could). The lock is taken last in each transaction, so it
-- is held only for the insert and the commit.
CREATE TABLE revocation_log_head (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- The last position handed out (visible once its transaction committed).
    position       bigint  NOT NULL,
    -- Every event at or below this position may have been pruned (see the janitor): a follower
    -- resuming from below it has missed events (OUT_OF_RANGE).
    pruned_through bigint  NOT NULL
);
INSERT INTO revocation_log_head (position, pruned_through) VALUES (0, 0);

CREATE TABLE session_revocation (
    position     bigint      PRIMARY KEY,
    session_id   uuid        NOT NULL,
    user_id      uuid        NOT NULL,
    revoked_at   timestamptz NOT NULL,
    -- No access token of the session is valid after this (its latest possible expiry).
    forget_after timestamptz NOT NULL,
    reason       text        NOT NULL
);
-- The janitor prunes by age.
CREATE INDEX session_revocation_revoked_at_idx ON session_revocation (revoked_at);
