//! The imports' SQL: compile-checked statements into named rows, each with an explicit
//! `tenant_id = $1` beside the row-level policies (and the account scope).

use chrono::{DateTime, NaiveDate, Utc};
use kernel::TenantId;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

pub(crate) struct ImportRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub format: Option<String>,
    pub status: String,
    pub preview: bool,
    pub skip_rejected: bool,
    pub mapping: Option<Value>,
    pub preset: Option<String>,
    pub profile_id: Option<Uuid>,
    pub file_name: Option<String>,
    pub file_size: i64,
    pub encoding: Option<String>,
    pub progress: f32,
    pub rows_total: i32,
    pub inserted: i32,
    pub duplicates: i32,
    pub rejected: i32,
    pub warnings: Value,
    pub error: Option<Value>,
    pub job_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub reverted_at: Option<DateTime<Utc>>,
}

pub(crate) struct NewImportRecord<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub format: Option<&'a str>,
    pub preview: bool,
    pub skip_rejected: bool,
    pub mapping: Option<Value>,
    pub profile_id: Option<Uuid>,
    pub file_name: Option<&'a str>,
    pub created_by: Option<Uuid>,
}

pub(crate) async fn insert_import(
    conn: &mut PgConnection,
    tenant: TenantId,
    i: NewImportRecord<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO imports (tenant_id, id, account_id, format, status, preview, skip_rejected,
             mapping, profile_id, file_name, file_size, file_sha256, created_by)
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, 0, '', $10)",
        tenant.as_uuid(),
        i.id,
        i.account_id,
        i.format,
        i.preview,
        i.skip_rejected,
        i.mapping,
        i.profile_id,
        i.file_name,
        i.created_by,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn insert_chunk(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
    account_id: Uuid,
    seq: i32,
    data: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO import_chunks (tenant_id, import_id, seq, account_id, data)
         VALUES ($1, $2, $3, $4, $5)",
        tenant.as_uuid(),
        import_id,
        seq,
        account_id,
        data,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the uploaded file's size, digest and format, and the job that reads it.
pub(crate) async fn uploaded(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    size: i64,
    sha256: &[u8],
    format: &str,
    job_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE imports SET file_size = $3, file_sha256 = $4, format = $5, job_id = $6,
                updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
        size,
        sha256,
        format,
        job_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An import; with `lock`, locked for a change of state.
pub(crate) async fn import(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    lock: bool,
) -> Result<Option<ImportRecord>, sqlx::Error> {
    if lock {
        sqlx::query_as!(
            ImportRecord,
            "SELECT id, account_id, format, status, preview, skip_rejected, mapping, preset,
                    profile_id, file_name, file_size, encoding, progress, rows_total, inserted,
                    duplicates, rejected, warnings, error, job_id, created_by, created_at,
                    finished_at, reverted_at
             FROM imports WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            tenant.as_uuid(),
            id,
        )
        .fetch_optional(conn)
        .await
    } else {
        sqlx::query_as!(
            ImportRecord,
            "SELECT id, account_id, format, status, preview, skip_rejected, mapping, preset,
                    profile_id, file_name, file_size, encoding, progress, rows_total, inserted,
                    duplicates, rejected, warnings, error, job_id, created_by, created_at,
                    finished_at, reverted_at
             FROM imports WHERE tenant_id = $1 AND id = $2",
            tenant.as_uuid(),
            id,
        )
        .fetch_optional(conn)
        .await
    }
}

/// A page of the tenant's imports, newest first.
pub(crate) async fn imports(
    conn: &mut PgConnection,
    tenant: TenantId,
    after: (Option<DateTime<Utc>>, Option<Uuid>),
    limit: i64,
) -> Result<Vec<ImportRecord>, sqlx::Error> {
    sqlx::query_as!(
        ImportRecord,
        "SELECT id, account_id, format, status, preview, skip_rejected, mapping, preset,
                profile_id, file_name, file_size, encoding, progress, rows_total, inserted,
                duplicates, rejected, warnings, error, job_id, created_by, created_at,
                finished_at, reverted_at
         FROM imports
         WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4",
        tenant.as_uuid(),
        after.0,
        after.1,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// The uploaded file, in order.
pub(crate) async fn chunks(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT data FROM import_chunks WHERE tenant_id = $1 AND import_id = $2 ORDER BY seq",
        tenant.as_uuid(),
        import_id,
    )
    .fetch_all(conn)
    .await
}

/// Drops the uploaded file (the import has ended).
pub(crate) async fn delete_chunks(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM import_chunks WHERE tenant_id = $1 AND import_id = $2",
        tenant.as_uuid(),
        import_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Starts a run: `running`, counts and rows of an earlier run cleared.
pub(crate) async fn start_run(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM import_rows WHERE tenant_id = $1 AND import_id = $2",
        tenant.as_uuid(),
        import_id,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE imports SET status = 'running', progress = 0, rows_total = 0, inserted = 0,
                duplicates = 0, rejected = 0, warnings = '[]', error = NULL, updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        import_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Staged rows, column by column.
#[derive(Default)]
pub(crate) struct StagedRows {
    pub row_nos: Vec<i32>,
    pub states: Vec<String>,
    pub dates: Vec<Option<NaiveDate>>,
    pub value_dates: Vec<Option<NaiveDate>>,
    pub amounts: Vec<Option<i64>>,
    pub merchants: Vec<Option<String>>,
    pub descriptions: Vec<Option<String>>,
    pub external_ids: Vec<Option<String>>,
    pub categories: Vec<Option<String>>,
    pub fingerprints: Vec<Option<Vec<u8>>>,
    pub fields: Vec<Option<String>>,
    pub reasons: Vec<Option<String>>,
}

pub(crate) async fn stage_rows(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
    account_id: Uuid,
    r: &StagedRows,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO import_rows (tenant_id, import_id, row_no, account_id, state, date,
             value_date, amount, merchant, description, external_id, category_hint, fingerprint,
             field, reason)
         SELECT $1, $2, r.row_no, $3, r.state, r.date, r.value_date, r.amount, r.merchant,
                r.description, r.external_id, r.category, r.fingerprint, r.field, r.reason
         FROM unnest($4::int4[], $5::text[], $6::date[], $7::date[], $8::int8[], $9::text[],
                     $10::text[], $11::text[], $12::text[], $13::bytea[], $14::text[], $15::text[])
           AS r(row_no, state, date, value_date, amount, merchant, description, external_id,
                category, fingerprint, field, reason)
         ON CONFLICT (tenant_id, import_id, row_no) DO NOTHING",
        tenant.as_uuid(),
        import_id,
        account_id,
        &r.row_nos,
        &r.states,
        &r.dates as &[Option<NaiveDate>],
        &r.value_dates as &[Option<NaiveDate>],
        &r.amounts as &[Option<i64>],
        &r.merchants as &[Option<String>],
        &r.descriptions as &[Option<String>],
        &r.external_ids as &[Option<String>],
        &r.categories as &[Option<String>],
        &r.fingerprints as &[Option<Vec<u8>>],
        &r.fields as &[Option<String>],
        &r.reasons as &[Option<String>],
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn set_progress(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
    progress: f32,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE imports SET progress = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        import_id,
        progress,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What staged rows became: `inserted` (the new transaction) or `duplicate` (the one it
/// duplicates, and the rule).
pub(crate) async fn set_outcomes(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
    row_nos: &[i32],
    states: &[String],
    transaction_ids: &[Option<Uuid>],
    matched_by: &[Option<String>],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE import_rows r SET state = o.state, transaction_id = o.transaction_id,
                matched_by = o.matched_by
         FROM unnest($3::int4[], $4::text[], $5::uuid[], $6::text[])
           AS o(row_no, state, transaction_id, matched_by)
         WHERE r.tenant_id = $1 AND r.import_id = $2 AND r.row_no = o.row_no",
        tenant.as_uuid(),
        import_id,
        row_nos,
        states,
        transaction_ids as &[Option<Uuid>],
        matched_by as &[Option<String>],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// How a run ended.
pub(crate) struct Ending<'a> {
    pub status: &'a str,
    /// `None` keeps the one recorded at upload.
    pub format: Option<&'a str>,
    pub encoding: Option<&'a str>,
    pub mapping: Option<Value>,
    pub preset: Option<&'a str>,
    pub rows_total: i32,
    pub inserted: i32,
    pub duplicates: i32,
    pub rejected: i32,
    pub warnings: Value,
    pub error: Option<Value>,
}

pub(crate) async fn end_run(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
    e: Ending<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE imports SET status = $3, format = coalesce($4, format), encoding = $5, mapping = coalesce($6, mapping),
                preset = $7, rows_total = $8, inserted = $9, duplicates = $10, rejected = $11,
                warnings = $12, error = $13, progress = 1, finished_at = now(), updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        import_id,
        e.status,
        e.format,
        e.encoding,
        e.mapping,
        e.preset,
        e.rows_total,
        e.inserted,
        e.duplicates,
        e.rejected,
        e.warnings,
        e.error,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Queues a previewed import again, to be committed.
pub(crate) async fn requeue(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
    skip_rejected: bool,
    job_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE imports SET status = 'queued', preview = false, skip_rejected = $3, job_id = $4,
                progress = 0, finished_at = NULL, updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        import_id,
        skip_rejected,
        job_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn mark_reverted(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE imports SET status = 'reverted', reverted_at = now(), updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        import_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) struct RowRecord {
    pub row_no: i32,
    pub state: String,
    pub date: Option<NaiveDate>,
    pub value_date: Option<NaiveDate>,
    pub amount: Option<i64>,
    pub merchant: Option<String>,
    pub description: Option<String>,
    pub external_id: Option<String>,
    pub category_hint: Option<String>,
    pub field: Option<String>,
    pub reason: Option<String>,
    pub transaction_id: Option<Uuid>,
    pub matched_by: Option<String>,
}

/// A page of an import's rows in one state (any state when `None`), by row number.
pub(crate) async fn rows(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
    state: Option<&str>,
    after: Option<i32>,
    limit: i64,
) -> Result<Vec<RowRecord>, sqlx::Error> {
    sqlx::query_as!(
        RowRecord,
        "SELECT row_no, state, date, value_date, amount, merchant, description, external_id,
                category_hint, field, reason, transaction_id, matched_by
         FROM import_rows
         WHERE tenant_id = $1 AND import_id = $2 AND ($3::text IS NULL OR state = $3)
           AND ($4::int4 IS NULL OR row_no > $4)
         ORDER BY row_no LIMIT $5",
        tenant.as_uuid(),
        import_id,
        state,
        after,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// The inserted transactions of an import, for the audit digest.
pub(crate) async fn inserted_ids(
    conn: &mut PgConnection,
    tenant: TenantId,
    import_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT transaction_id AS "id!" FROM import_rows
           WHERE tenant_id = $1 AND import_id = $2 AND state = 'inserted'
             AND transaction_id IS NOT NULL
           ORDER BY row_no"#,
        tenant.as_uuid(),
        import_id,
    )
    .fetch_all(conn)
    .await
}

pub(crate) struct ProfileRecord {
    pub id: Uuid,
    pub name: String,
    pub mapping: Value,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) async fn insert_profile(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    name: &str,
    mapping: &Value,
) -> Result<ProfileRecord, sqlx::Error> {
    sqlx::query_as!(
        ProfileRecord,
        "INSERT INTO import_profiles (tenant_id, id, name, mapping) VALUES ($1, $2, $3, $4)
         RETURNING id, name, mapping, version, created_at, updated_at",
        tenant.as_uuid(),
        id,
        name,
        mapping,
    )
    .fetch_one(conn)
    .await
}

pub(crate) async fn profile(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<ProfileRecord>, sqlx::Error> {
    sqlx::query_as!(
        ProfileRecord,
        "SELECT id, name, mapping, version, created_at, updated_at FROM import_profiles
         WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
    )
    .fetch_optional(conn)
    .await
}

pub(crate) async fn profiles(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<ProfileRecord>, sqlx::Error> {
    sqlx::query_as!(
        ProfileRecord,
        "SELECT id, name, mapping, version, created_at, updated_at FROM import_profiles
         WHERE tenant_id = $1 ORDER BY lower(name), id LIMIT 500",
        tenant.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

pub(crate) async fn update_profile(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    name: &str,
    mapping: &Value,
) -> Result<Option<ProfileRecord>, sqlx::Error> {
    sqlx::query_as!(
        ProfileRecord,
        "UPDATE import_profiles SET name = $3, mapping = $4, version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND id = $2
         RETURNING id, name, mapping, version, created_at, updated_at",
        tenant.as_uuid(),
        id,
        name,
        mapping,
    )
    .fetch_optional(conn)
    .await
}

pub(crate) async fn delete_profile(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM import_profiles WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The mapping an account's last CSV import used.
pub(crate) async fn account_mapping(
    conn: &mut PgConnection,
    tenant: TenantId,
    account: Uuid,
) -> Result<Option<Value>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT mapping FROM account_import_mappings WHERE tenant_id = $1 AND account_id = $2",
        tenant.as_uuid(),
        account,
    )
    .fetch_optional(conn)
    .await
}

pub(crate) async fn remember_mapping(
    conn: &mut PgConnection,
    tenant: TenantId,
    account: Uuid,
    mapping: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO account_import_mappings (tenant_id, account_id, mapping) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, account_id) DO UPDATE SET mapping = $3, updated_at = now()",
        tenant.as_uuid(),
        account,
        mapping,
    )
    .execute(conn)
    .await?;
    Ok(())
}
