-- @omnibus/postgres schema, version 1. Safe to run more than once.

-- Idempotency claims: key = "<group>:<message id>". A row is either held (a lease until expires_at) or
-- done (remembered until expires_at). token fences the holder: only the claim that wrote it may
-- complete or release the row.
CREATE TABLE IF NOT EXISTS "omnibus_idempotency" (
  key text PRIMARY KEY,
  state text NOT NULL CHECK (state IN ('held', 'done')),
  token uuid NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS "omnibus_idempotency_expires_at" ON "omnibus_idempotency" (expires_at);

-- Transactional outbox: rows written inside the caller's transaction, published by a relay after
-- commit, in seq order per bucket (a bucket holds whole keys).
CREATE TABLE IF NOT EXISTS "omnibus_outbox" (
  seq bigserial PRIMARY KEY,
  message_id text NOT NULL,
  topic text NOT NULL,
  key text,
  bucket smallint NOT NULL GENERATED ALWAYS AS (hashtext(coalesce(key, message_id)) & 63) STORED,
  envelope jsonb NOT NULL,
  data bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  sent_at timestamptz
);
CREATE INDEX IF NOT EXISTS "omnibus_outbox_pending" ON "omnibus_outbox" (bucket, seq) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS "omnibus_outbox_sent_at" ON "omnibus_outbox" (sent_at) WHERE sent_at IS NOT NULL;
