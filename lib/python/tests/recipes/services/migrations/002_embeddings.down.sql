DROP TABLE note_embeddings;
