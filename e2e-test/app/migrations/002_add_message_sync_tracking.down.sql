DROP INDEX messages_conversation_sequence;
ALTER TABLE messages DROP COLUMN synced_at;
ALTER TABLE messages DROP COLUMN sequence;
