SELECT k.id, k.roles, t.deleted_at IS NOT NULL AS "deleted!", t.policy_version
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.tenant_id = $1 AND k.hash = ANY($2) AND k.revoked_at IS NULL
  AND (k.expires_at IS NULL OR k.expires_at > now())
