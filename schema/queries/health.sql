-- name: ping
-- The database answers (the readiness probe).
SELECT 1;
