-- Which client has seen which message, for multi-device sync.
ALTER TABLE messages ADD COLUMN sequence bigserial;
ALTER TABLE messages ADD COLUMN synced_at timestamptz;
CREATE UNIQUE INDEX messages_conversation_sequence ON messages (conversation_id, sequence);
