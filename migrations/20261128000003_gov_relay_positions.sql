-- Where the Kafka relay stands in the ledger. Advanced only after the broker has
-- acknowledged every message up to that seq (at-least-once delivery).
CREATE TABLE gov_relay_positions (
    relay       text        NOT NULL,
    position    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT gov_relay_positions_pkey PRIMARY KEY (relay)
);
REVOKE ALL ON gov_relay_positions FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON gov_relay_positions TO gov_app;
