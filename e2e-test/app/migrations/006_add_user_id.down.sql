DROP INDEX conversations_user_updated;
ALTER TABLE memory DROP COLUMN user_id;
ALTER TABLE conversations DROP COLUMN user_id;
