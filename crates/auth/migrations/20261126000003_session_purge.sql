-- Sessions and refresh tokens are deleted once no request can use them
-- (`sessions::purge`, run with the partition upkeep). These BRIN indexes let each run
-- skip the recent part of the tables: rows are written in time order, a BRIN summary
-- per block range costs next to nothing on insert, and no updated column is indexed
-- (a refresh moves `sessions.expires_at`, and stays a HOT update).
CREATE INDEX refresh_tokens_expires_brin ON refresh_tokens USING brin (expires_at);
CREATE INDEX sessions_created_brin ON sessions USING brin (created_at);
