-- Assistant replies are streamed: pending -> streaming -> completed | failed.
ALTER TABLE messages ADD COLUMN completion_status text NOT NULL DEFAULT 'completed'
    CHECK (completion_status IN ('pending', 'streaming', 'completed', 'failed'));
ALTER TABLE messages ADD COLUMN error text;
