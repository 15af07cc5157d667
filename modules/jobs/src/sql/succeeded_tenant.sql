UPDATE jobs SET status = 'succeeded', progress = 1, finished_at = now(), updated_at = now()
WHERE tenant_id = $1 AND id = $2
