DROP INDEX messages_stanza_id;
ALTER TABLE messages DROP COLUMN stanza_id;
