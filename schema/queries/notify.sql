-- name: notify_all
-- Sends each payload as one notification on the channel: every session LISTENing on it
-- gets them (the Postgres wake bus). Answers how many were sent.
SELECT count(pg_notify(:channel, payload)) AS sent FROM unnest(:payloads::text[]) AS payload;
