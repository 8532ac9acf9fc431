ALTER TABLE tools DROP COLUMN mcp_server_id;
DROP TABLE mcp_servers;
