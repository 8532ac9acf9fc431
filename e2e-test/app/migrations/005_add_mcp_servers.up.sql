-- Model Context Protocol servers whose tools the assistant may call.
CREATE TABLE mcp_servers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE,
    transport text NOT NULL CHECK (transport IN ('stdio', 'sse', 'http')),
    command text,
    url text,
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tools ADD COLUMN mcp_server_id uuid REFERENCES mcp_servers (id) ON DELETE CASCADE;
