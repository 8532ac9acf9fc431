-- XMPP stanza ids, so a message relayed twice is stored once.
ALTER TABLE messages ADD COLUMN stanza_id text;
CREATE UNIQUE INDEX messages_stanza_id ON messages (stanza_id) WHERE stanza_id IS NOT NULL;
