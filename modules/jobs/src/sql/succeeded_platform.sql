UPDATE platform_jobs SET status = 'succeeded', progress = 1, finished_at = now(), updated_at = now()
WHERE id = $1
