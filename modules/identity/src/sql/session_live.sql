SELECT revoked_at IS NULL AS "live!" FROM user_sessions WHERE id = $1 AND user_id = $2
