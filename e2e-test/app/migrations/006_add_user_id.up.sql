-- Conversations and memory belong to a user (a single default user until auth exists).
ALTER TABLE conversations ADD COLUMN user_id text NOT NULL DEFAULT 'default';
ALTER TABLE memory ADD COLUMN user_id text NOT NULL DEFAULT 'default';
CREATE INDEX conversations_user_updated ON conversations (user_id, updated_at DESC);
