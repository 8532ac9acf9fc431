CREATE TABLE note_embeddings (
    note_id bigint PRIMARY KEY REFERENCES notes (id) ON DELETE CASCADE,
    embedding vector(3) NOT NULL
);
CREATE INDEX note_embeddings_hnsw ON note_embeddings USING hnsw (embedding vector_l2_ops);
