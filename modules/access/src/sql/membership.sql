SELECT true AS "live!", m.roles AS "roles?", t.deleted_at IS NOT NULL AS "deleted?",
       t.policy_version AS "policy_version?", m.account_ids AS "account_ids?"
FROM (SELECT 1) one
LEFT JOIN memberships m ON m.tenant_id = $1 AND m.user_id = $2
LEFT JOIN tenants t ON t.id = m.tenant_id
