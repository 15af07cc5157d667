SELECT s.live AS "live!", m.roles AS "roles?", t.deleted_at IS NOT NULL AS "deleted?",
       t.policy_version AS "policy_version?", m.account_ids AS "account_ids?"
FROM (SELECT EXISTS (SELECT FROM user_sessions
        WHERE id = $3 AND user_id = $2 AND revoked_at IS NULL) AS live) s
LEFT JOIN memberships m ON m.tenant_id = $1 AND m.user_id = $2
LEFT JOIN tenants t ON t.id = m.tenant_id
