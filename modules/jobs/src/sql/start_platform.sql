WITH old AS (
    SELECT kind, payload, status FROM platform_jobs WHERE id = $1 FOR UPDATE
), started AS (
    UPDATE platform_jobs SET status = 'running', attempts = $2, started_at = now(), updated_at = now()
    WHERE id = $1 AND (SELECT status FROM old) NOT IN ('succeeded', 'dead')
)
SELECT kind, payload, status FROM old
