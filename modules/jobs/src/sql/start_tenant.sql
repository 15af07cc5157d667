WITH old AS (
    SELECT kind, payload, status FROM jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE
), started AS (
    UPDATE jobs SET status = 'running', attempts = $3, started_at = now(), updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND (SELECT status FROM old) NOT IN ('succeeded', 'dead')
)
SELECT kind, payload, status FROM old
