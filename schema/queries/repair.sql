-- name: expire_activity_attempts
-- Attempts whose task lease expired are over.
UPDATE activity_attempts SET status = 'expired', closed_at = now()
 WHERE id = ANY($1::text[]) AND status = 'running';
