-- name: get_run_search_attributes
-- A locked run's search attributes, for an upsert to merge into.
SELECT search_attributes FROM workflow_runs WHERE id = $1;

-- name: set_run_search_attributes
-- Replace a run's search attributes with the merged map (the visibility projection).
UPDATE workflow_runs SET search_attributes = $2::jsonb, updated_at = now() WHERE id = $1;

-- name: get_run_memo
-- A locked run's memo, for an upsert to merge into.
SELECT memo FROM workflow_runs WHERE id = $1;

-- name: set_run_memo
-- Replace a run's memo with the merged map (what describe shows).
UPDATE workflow_runs SET memo = $2::jsonb, updated_at = now() WHERE id = $1;
