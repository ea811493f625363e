-- Where a projector or the relay is stuck: the ledger entry it cannot apply or publish,
-- why, and since when (NULL while it moves). Shown by `projections status`.
ALTER TABLE gov_projection_positions
    ADD COLUMN stuck_seq    bigint,
    ADD COLUMN stuck_reason text,
    ADD COLUMN stuck_since  timestamptz;
ALTER TABLE gov_relay_positions
    ADD COLUMN stuck_seq    bigint,
    ADD COLUMN stuck_reason text,
    ADD COLUMN stuck_since  timestamptz;
