ALTER TABLE messages DROP COLUMN error;
ALTER TABLE messages DROP COLUMN completion_status;
