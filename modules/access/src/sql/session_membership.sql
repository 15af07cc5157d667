SELECT s.live AS "live!", m.roles AS "roles?", t.deleted_at IS NOT NULL AS "deleted?",
       t.policy_version AS "policy_version?", m.account_ids AS "account_ids?",
       b.read_only_since IS NOT NULL AS "read_only!"
FROM (SELECT EXISTS (SELECT FROM user_sessions
        WHERE id = $3 AND user_id = $2 AND revoked_at IS NULL) AS live) s
LEFT JOIN memberships m ON m.tenant_id = $1 AND m.user_id = $2
LEFT JOIN tenants t ON t.id = m.tenant_id
LEFT JOIN billing_accounts b ON b.tenant_id = m.tenant_id
