SELECT k.id, k.roles, t.deleted_at IS NOT NULL AS "deleted!", t.policy_version,
       k.created_by, m.roles AS "creator_roles?", k.account_ids,
       m.account_ids AS "creator_account_ids?",
       b.read_only_since IS NOT NULL AS "read_only!"
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
LEFT JOIN memberships m ON m.tenant_id = k.tenant_id AND m.user_id = k.created_by
LEFT JOIN billing_accounts b ON b.tenant_id = k.tenant_id
WHERE k.tenant_id = $1 AND k.hash = ANY($2) AND k.revoked_at IS NULL
  AND (k.expires_at IS NULL OR k.expires_at > now())
