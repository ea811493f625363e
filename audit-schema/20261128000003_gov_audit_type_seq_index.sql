-- Lets a process that follows another's projector read just one aggregate type's events
-- in a seq range (cache invalidation), and lets the OPA sync fold Policy events cheaply.
CREATE INDEX gov_audit_trail_entries_type_seq ON gov_audit_trail_entries (aggregate_type, seq);
