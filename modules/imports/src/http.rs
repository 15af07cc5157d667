//! The import routes. Thin: authorize, read the multipart upload into the service as it
//! arrives, map. The body's 50 MiB cap and its deadline are the edge's; the file's own cap
//! is the service's.

use std::sync::Arc;

use kernel::{
    ApiResult, FieldError, Keyset, LazyJson, Problem, TenantId, Validate,
    auth::{Authorize, BearerAuth},
    concurrency,
};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi,
    param::{Header, Path, Query},
    payload::Json,
    registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry},
};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    Imports,
    domain::{FileFormat, Import, ImportRow, NewImport, Profile, Reversal, RowState},
    formats::csv::Mapping,
};

/// The permission of each operation, declared beside the routes (spec: `x-permission`).
pub const PERMISSIONS: &[(&str, &str)] = &[
    ("create_import", IMPORTS_WRITE),
    ("list_imports", IMPORTS_READ),
    ("get_import", IMPORTS_READ),
    ("list_import_rows", IMPORTS_READ),
    ("commit_import", IMPORTS_WRITE),
    ("revert_import", IMPORTS_WRITE),
    ("list_import_profiles", IMPORTS_READ),
    ("create_import_profile", IMPORTS_WRITE),
    ("get_import_profile", IMPORTS_READ),
    ("update_import_profile", IMPORTS_WRITE),
    ("delete_import_profile", IMPORTS_WRITE),
];
const IMPORTS_READ: &str = "imports:read";
const IMPORTS_WRITE: &str = "imports:write";

/// The largest non-file field of an upload (a mapping is the largest).
const FIELD_LIMIT: u64 = 64 * 1024;

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Bank file imports: upload, preview, inspect, commit, revert; saved CSV mappings.
    Imports,
}

kernel::page_object!(
    /// The tenant's imports, newest first.
    ImportList,
    Import
);

/// A page of an import's rows, by row number.
#[derive(Debug, Object)]
pub struct ImportRowList {
    pub data: Vec<ImportRow>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// An import queued for its job.
#[derive(Debug, Object)]
pub struct ImportQueued {
    pub import_id: Uuid,
    /// Follow it at `GET …/jobs/{job_id}`, or the import's `status` and `progress`.
    pub job_id: Uuid,
}

#[derive(ApiResponse)]
pub enum Queued {
    /// Queued: the job reads the file.
    #[oai(status = 202)]
    Queued(Json<ImportQueued>, #[oai(header = "Location")] String),
}

/// Commit a previewed import.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    /// Import the readable rows and keep the rejected ones listed (default false: a file
    /// with rejected rows fails whole).
    pub skip_rejected: Option<bool>,
}

impl Validate for CommitBody {}

/// A saved CSV mapping.
#[derive(Debug, Object)]
pub struct ImportProfile {
    pub id: Uuid,
    pub name: String,
    pub mapping: MappingJson,
    pub version: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Profile> for ImportProfile {
    fn from(p: Profile) -> ImportProfile {
        ImportProfile {
            id: p.id,
            name: p.name,
            mapping: MappingJson(serde_json::to_value(&p.mapping).unwrap_or_default()),
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// The tenant's import profiles, by name.
#[derive(Debug, Object)]
pub struct ImportProfileList {
    pub data: Vec<ImportProfile>,
}

#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProfileBody {
    /// 1–200 characters, unique in the tenant (case-insensitive).
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    pub mapping: MappingJson,
}

impl Validate for NewProfileBody {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        if let Err(e) = kernel::DisplayName::parse("name", &self.name) {
            errors.push(e);
        }
        if let Err(e) = mapping_text(self.mapping.0.clone()) {
            errors.push(FieldError::new("mapping", e));
        }
    }
}

#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    pub mapping: Option<MappingJson>,
}

impl Validate for ProfilePatch {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        if let Some(Err(e)) = self
            .name
            .as_deref()
            .map(|n| kernel::DisplayName::parse("name", n))
        {
            errors.push(e);
        }
        if let Some(Err(e)) = self.mapping.as_ref().map(|m| mapping_text(m.0.clone())) {
            errors.push(FieldError::new("mapping", e));
        }
    }
}

#[derive(ApiResponse)]
pub enum ProfileCreated {
    #[oai(status = 201)]
    Created(Json<ImportProfile>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

/// The routes of imports.
pub struct ImportsApi {
    authz: Arc<dyn Authorize>,
    imports: Imports,
    cursors: kernel::CursorSigner,
}

impl ImportsApi {
    pub fn new(authz: Arc<dyn Authorize>, imports: Imports, cursors: kernel::CursorSigner) -> Self {
        ImportsApi {
            authz,
            imports,
            cursors,
        }
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Imports")]
impl ImportsApi {
    /// Uploads a bank file (multipart; the `file` part last, at most 50 MiB) into an
    /// account. The file is stored as it arrives; a job reads it: `202` with the import and
    /// its job. Formats: CSV (a mapping, a saved profile, the account's last mapping or a
    /// recognised bank layout), OFX/QFX, CAMT.053, MT940, QIF; detected when `format` is
    /// absent. Every row is deduplicated by the fingerprint of docs/DEDUP.md. With
    /// `preview=true` nothing is written to the ledger: the import shows what would be
    /// inserted, skipped (and why) and rejected, and `POST …/commit` imports it.
    #[oai(
        path = "/tenants/:tenant_id/imports",
        method = "post",
        operation_id = "create_import"
    )]
    async fn create_import(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        upload: ImportUpload,
    ) -> ApiResult<Queued> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, IMPORTS_WRITE)
            .await?;
        let boundary = upload.boundary.ok_or_else(|| {
            Problem::unsupported_media_type("An upload is multipart/form-data with a boundary.")
        })?;
        let constraints = multer::Constraints::new().size_limit(
            multer::SizeLimit::new()
                .per_field(FIELD_LIMIT)
                .for_field("file", crate::MAX_FILE_BYTES as u64 + 1),
        );
        let mut form = multer::Multipart::with_constraints(
            upload.body.into_bytes_stream(),
            boundary,
            constraints,
        );
        let mut fields = UploadFields::default();
        let mut created = None;
        while let Some(mut field) = form.next_field().await.map_err(multipart_problem)? {
            let name = field.name().unwrap_or_default().to_string();
            if name == "file" {
                let new = fields.to_new()?;
                let new = NewImport {
                    file_name: field
                        .file_name()
                        .map(|n| n.chars().filter(|c| !c.is_control()).take(255).collect()),
                    ..new
                };
                let mut up = self.imports.start(&mut tx, new).await?;
                while let Some(chunk) = field.chunk().await.map_err(multipart_problem)? {
                    self.imports.write(&mut tx, &mut up, &chunk).await?;
                }
                created = Some(self.imports.finish(&mut tx, up).await?);
                break;
            }
            let text = field.text().await.map_err(multipart_problem)?;
            fields.set(&name, text)?;
        }
        // Anything after the file is refused rather than silently ignored.
        if created.is_some()
            && let Some(extra) = form.next_field().await.map_err(multipart_problem)?
        {
            return Err(Problem::validation(vec![FieldError::new(
                extra.name().unwrap_or("file"),
                "must come before the `file` part: the file is the last part of the form",
            )]));
        }
        let Some(created) = created else {
            return Err(Problem::validation(vec![FieldError::new(
                "file",
                "is required (the last part of the form)",
            )]));
        };
        tx.commit().await?;
        Ok(Queued::Queued(
            Json(ImportQueued {
                import_id: created.import_id,
                job_id: created.job_id,
            }),
            format!(
                "/api/v1/tenants/{}/imports/{}",
                tenant_id.0, created.import_id
            ),
        ))
    }

    /// The tenant's imports (of the accounts the caller may see), newest first.
    #[oai(
        path = "/tenants/:tenant_id/imports",
        method = "get",
        operation_id = "list_imports"
    )]
    async fn list_imports(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<ImportList>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, IMPORTS_READ)
            .await?;
        let page = Keyset::parse(
            &self.cursors,
            "list_imports",
            tenant_id.0,
            limit.0,
            cursor.0.as_deref(),
        )?;
        let list = self.imports.imports(&mut tx, &page).await?;
        tx.commit().await?;
        Ok(Json(list.into()))
    }

    /// An import: `status`, `progress`, counts, warnings and, when failed, why. Its rows
    /// (inserted, duplicates with the row each duplicates, rejected with the reason) are
    /// at `GET …/imports/{id}/rows`.
    #[oai(
        path = "/tenants/:tenant_id/imports/:id",
        method = "get",
        operation_id = "get_import"
    )]
    async fn get_import(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Import>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, IMPORTS_READ)
            .await?;
        let import = self.imports.import(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Json(import))
    }

    /// The rows of an import by row number, all or in one `state`: `inserted` (with the new
    /// transaction), `duplicate` (with the transaction it duplicates and the rule that
    /// matched), `rejected` (with the field and the reason), `staged` (a preview's would-be
    /// inserts, parsed).
    #[oai(
        path = "/tenants/:tenant_id/imports/:id/rows",
        method = "get",
        operation_id = "list_import_rows"
    )]
    async fn list_import_rows(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        state: Query<Option<RowState>>,
        /// 1–500, default 100.
        limit: Query<Option<i64>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<ImportRowList>> {
        let limit = limit.0.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            return Err(Problem::validation(vec![FieldError::new(
                "limit",
                "must be between 1 and 500",
            )]));
        }
        let after = match cursor.0.as_deref() {
            None => None,
            Some(c) => Some(
                c.strip_prefix("row:")
                    .and_then(|n| n.parse::<i32>().ok())
                    .ok_or_else(|| {
                        Problem::validation(vec![FieldError::new(
                            "cursor",
                            "is not a cursor of this list",
                        )])
                    })?,
            ),
        };
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, IMPORTS_READ)
            .await?;
        let mut rows = self
            .imports
            .rows(&mut tx, id.0, state.0, after, limit + 1)
            .await?;
        tx.commit().await?;
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = has_more
            .then(|| rows.last().map(|r| format!("row:{}", r.row)))
            .flatten();
        Ok(Json(ImportRowList {
            data: rows,
            next_cursor,
            has_more,
        }))
    }

    /// Commits a previewed import, or one that failed for its rejected rows: it is read
    /// again and written; with `skip_rejected`, the readable rows are imported and the
    /// rejected ones stay listed.
    #[oai(
        path = "/tenants/:tenant_id/imports/:id/commit",
        method = "post",
        operation_id = "commit_import"
    )]
    async fn commit_import(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        body: LazyJson<CommitBody>,
    ) -> ApiResult<Queued> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, IMPORTS_WRITE)
            .await?;
        let body = body.parse()?.into_inner();
        let created = self
            .imports
            .commit(&mut tx, id.0, body.skip_rejected.unwrap_or(false))
            .await?;
        tx.commit().await?;
        Ok(Queued::Queued(
            Json(ImportQueued {
                import_id: created.import_id,
                job_id: created.job_id,
            }),
            format!(
                "/api/v1/tenants/{}/imports/{}",
                tenant_id.0, created.import_id
            ),
        ))
    }

    /// Reverts a completed import: the rows it inserted that nobody has edited since are
    /// deleted (soft, in one transaction; balances and search follow); edited rows are kept
    /// and listed. Their fingerprints stay: importing the same file again adds nothing.
    #[oai(
        path = "/tenants/:tenant_id/imports/:id",
        method = "delete",
        operation_id = "revert_import"
    )]
    async fn revert_import(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Reversal>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, IMPORTS_WRITE)
            .await?;
        let reversal = self.imports.revert(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Json(reversal))
    }

    /// The tenant's saved CSV mappings, by name.
    #[oai(
        path = "/tenants/:tenant_id/imports/profiles",
        method = "get",
        operation_id = "list_import_profiles"
    )]
    async fn list_import_profiles(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
    ) -> ApiResult<Json<ImportProfileList>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, IMPORTS_READ)
            .await?;
        let list = self.imports.profiles(&mut tx).await?;
        tx.commit().await?;
        Ok(Json(ImportProfileList {
            data: list.into_iter().map(Into::into).collect(),
        }))
    }

    /// Saves a CSV mapping under a name, for uploads to name by `profile_id`.
    #[oai(
        path = "/tenants/:tenant_id/imports/profiles",
        method = "post",
        operation_id = "create_import_profile"
    )]
    async fn create_import_profile(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        body: LazyJson<NewProfileBody>,
    ) -> ApiResult<ProfileCreated> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, IMPORTS_WRITE)
            .await?;
        let body = body.parse()?.into_inner();
        let mapping = mapping_of(body.mapping.0)?;
        let profile = self
            .imports
            .create_profile(&mut tx, &body.name, mapping)
            .await?;
        tx.commit().await?;
        let at = format!(
            "/api/v1/tenants/{}/imports/profiles/{}",
            tenant_id.0, profile.id
        );
        Ok(ProfileCreated::Created(Json(profile.into()), at))
    }

    #[oai(
        path = "/tenants/:tenant_id/imports/profiles/:id",
        method = "get",
        operation_id = "get_import_profile"
    )]
    async fn get_import_profile(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<ImportProfile>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, IMPORTS_READ)
            .await?;
        let profile = self.imports.profile(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Json(profile.into()))
    }

    /// Renames a profile or replaces its mapping (`If-Match`: its version).
    #[oai(
        path = "/tenants/:tenant_id/imports/profiles/:id",
        method = "patch",
        operation_id = "update_import_profile"
    )]
    async fn update_import_profile(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: LazyJson<ProfilePatch>,
    ) -> ApiResult<Json<ImportProfile>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, IMPORTS_WRITE)
            .await?;
        let body = body.parse()?.into_inner();
        let expected = concurrency::if_match(if_match.0.as_deref())?;
        let mapping = body.mapping.map(|m| mapping_of(m.0)).transpose()?;
        let profile = self
            .imports
            .update_profile(&mut tx, id.0, expected, body.name, mapping)
            .await?;
        tx.commit().await?;
        Ok(Json(profile.into()))
    }

    #[oai(
        path = "/tenants/:tenant_id/imports/profiles/:id",
        method = "delete",
        operation_id = "delete_import_profile"
    )]
    async fn delete_import_profile(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Deleted> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, IMPORTS_WRITE)
            .await?;
        self.imports.delete_profile(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Deleted::Deleted)
    }
}

/// A CSV mapping as JSON: read with the mapping's own rules (serde), described in the spec
/// field by field.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct MappingJson(pub serde_json::Value);

impl poem_openapi::types::Type for MappingJson {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> std::borrow::Cow<'static, str> {
        "ImportMapping".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |_| mapping_schema());
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl poem_openapi::types::ParseFromJSON for MappingJson {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value {
            Some(v @ serde_json::Value::Object(_)) => Ok(MappingJson(v)),
            _ => Err(poem_openapi::types::ParseError::custom(
                "a mapping is a JSON object",
            )),
        }
    }
}

impl poem_openapi::types::ToJSON for MappingJson {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(self.0.clone())
    }
}

/// The spec's schema of a CSV mapping (`formats::csv::Mapping`).
fn mapping_schema() -> MetaSchema {
    let field = |ty: &'static str, description: &'static str| {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(description),
            ..MetaSchema::new(ty)
        }))
    };
    let one_of = |values: &[&str], description: &'static str| {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(description),
            enum_items: values.iter().map(|v| serde_json::json!(v)).collect(),
            ..MetaSchema::new("string")
        }))
    };
    let column = "A column: its header (any case and spacing) or `#n`, its 0-based position.";
    MetaSchema {
        description: Some(
            "How to read a CSV file. Columns are named by header or `#n`; only `date` is required, with `amount` or `debit`/`credit`.",
        ),
        required: vec!["date"],
        properties: vec![
            ("date", field("string", column)),
            (
                "date_format",
                field(
                    "string",
                    "chrono format, e.g. `%d.%m.%Y`; read by shape when absent.",
                ),
            ),
            (
                "date_order",
                one_of(
                    &["day_first", "month_first"],
                    "For ambiguous dates; decided from the file when absent.",
                ),
            ),
            ("value_date", field("string", column)),
            ("amount", field("string", column)),
            (
                "debit",
                field("string", "Money out, as a positive number: a column."),
            ),
            ("credit", field("string", "Money in: a column.")),
            (
                "direction",
                field("string", "A column saying CR/DR, H/S or Soll/Haben."),
            ),
            (
                "sign",
                one_of(
                    &["normal", "inverted"],
                    "`inverted`: positive amounts are money out (card statements).",
                ),
            ),
            (
                "decimal",
                one_of(
                    &["point", "comma"],
                    "The decimal mark; decided from the amounts when absent.",
                ),
            ),
            (
                "thousands",
                field("string", "The thousands separator, one character."),
            ),
            ("currency", field("string", column)),
            ("merchant", field("string", column)),
            (
                "description",
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    description: Some("Columns joined with a space."),
                    items: Some(Box::new(MetaSchemaRef::Inline(Box::new(MetaSchema::new(
                        "string",
                    ))))),
                    ..MetaSchema::new("array")
                })),
            ),
            ("external_id", field("string", column)),
            ("category", field("string", column)),
            (
                "account",
                field("string", "A column with the account's own number or IBAN."),
            ),
            ("skip_rows", field("integer", "Lines before the header.")),
            (
                "delimiter",
                field("string", "One character; detected when absent."),
            ),
            (
                "encoding",
                field(
                    "string",
                    "A WHATWG label (`windows-1252`); detected when absent.",
                ),
            ),
            ("has_header", field("boolean", "Default true.")),
        ],
        ..MetaSchema::new("object")
    }
}

/// A mapping from its JSON, checked (what is wrong, for a `422` on `mapping`).
fn mapping_text(value: serde_json::Value) -> Result<Mapping, String> {
    let mapping: Mapping = serde_json::from_value(value).map_err(|e| e.to_string())?;
    mapping.check()?;
    Ok(mapping)
}

/// [`mapping_text`] as a problem.
fn mapping_of(value: serde_json::Value) -> Result<Mapping, Problem> {
    mapping_text(value).map_err(|e| Problem::validation(vec![FieldError::new("mapping", e)]))
}

/// The small fields of an upload, before the file.
#[derive(Default)]
struct UploadFields {
    account_id: Option<String>,
    format: Option<String>,
    mapping: Option<String>,
    profile_id: Option<String>,
    preview: Option<String>,
    skip_rejected: Option<String>,
}

impl UploadFields {
    fn set(&mut self, name: &str, value: String) -> Result<(), Problem> {
        if value.contains('\0') {
            return Err(Problem::validation(vec![FieldError::new(
                name.chars()
                    .filter(|c| !c.is_control())
                    .take(64)
                    .collect::<String>(),
                "must not contain NUL characters",
            )]));
        }
        let slot = match name {
            "account_id" => &mut self.account_id,
            "format" => &mut self.format,
            "mapping" => &mut self.mapping,
            "profile_id" => &mut self.profile_id,
            "preview" => &mut self.preview,
            "skip_rejected" => &mut self.skip_rejected,
            other => {
                return Err(Problem::validation(vec![FieldError::new(
                    other.chars().take(64).collect::<String>(),
                    "is not a field of an upload (account_id, format, mapping, profile_id, preview, skip_rejected, file)",
                )]));
            }
        };
        *slot = Some(value);
        Ok(())
    }

    fn to_new(&self) -> Result<NewImport, Problem> {
        let mut errors = Vec::new();
        let uuid = |field: &str, v: &Option<String>, errors: &mut Vec<FieldError>| {
            v.as_deref().and_then(|s| match Uuid::parse_str(s.trim()) {
                Ok(u) => Some(u),
                Err(_) => {
                    errors.push(FieldError::new(field, "is not a UUID"));
                    None
                }
            })
        };
        let flag = |field: &str, v: &Option<String>, errors: &mut Vec<FieldError>| match v
            .as_deref()
            .map(str::trim)
        {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                errors.push(FieldError::new(field, "must be `true` or `false`"));
                false
            }
        };
        let account_id = uuid("account_id", &self.account_id, &mut errors);
        if self.account_id.is_none() {
            errors.push(FieldError::new(
                "account_id",
                "is required (before the `file` part)",
            ));
        }
        let profile_id = uuid("profile_id", &self.profile_id, &mut errors);
        let preview = flag("preview", &self.preview, &mut errors);
        let skip_rejected = flag("skip_rejected", &self.skip_rejected, &mut errors);
        let format = match self.format.as_deref().map(str::trim) {
            None | Some("") => None,
            Some("csv") => Some(FileFormat::Csv),
            Some("ofx" | "qfx") => Some(FileFormat::Ofx),
            Some("camt053" | "camt.053") => Some(FileFormat::Camt053),
            Some("mt940") => Some(FileFormat::Mt940),
            Some("qif") => Some(FileFormat::Qif),
            Some(_) => {
                errors.push(FieldError::new(
                    "format",
                    "must be one of csv, ofx, camt053, mt940, qif",
                ));
                None
            }
        };
        let mapping = match self.mapping.as_deref() {
            None => None,
            Some(text) => match serde_json::from_str::<Mapping>(text) {
                Ok(m) => Some(m),
                Err(e) => {
                    errors.push(FieldError::new("mapping", e.to_string()));
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(Problem::validation(errors));
        }
        Ok(NewImport {
            account_id: account_id.unwrap_or_default(),
            format: format.map(Into::into),
            mapping,
            profile_id,
            preview,
            skip_rejected,
            file_name: None,
        })
    }
}

/// A multipart failure as a problem: over the body cap `413`, too slow `408`, else `400`.
fn multipart_problem(e: multer::Error) -> Problem {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(too_large) = err.downcast_ref::<kernel::problem::BodyTooLarge>() {
            return Problem::payload_too_large(too_large.0);
        }
        if let Some(slow) = err.downcast_ref::<kernel::problem::BodyTimedOut>() {
            return Problem::request_timeout(slow.0);
        }
        source = err.source();
    }
    match e {
        multer::Error::FieldSizeExceeded { field_name, .. } => match field_name.as_deref() {
            Some("file") => Problem::payload_too_large(crate::MAX_FILE_BYTES),
            other => Problem::validation(vec![FieldError::new(
                other.unwrap_or("field"),
                format!("is longer than {FIELD_LIMIT} bytes"),
            )]),
        },
        other => Problem::bad_request(
            "unreadable_body",
            format!("The multipart body could not be read: {other}"),
        ),
    }
}

/// The multipart upload of `POST …/imports`, read as a stream by the route (which
/// authorizes first: a stranger learns nothing from a `415`).
pub struct ImportUpload {
    body: poem::Body,
    boundary: Option<String>,
}

impl<'a> ApiExtractor<'a> for ImportUpload {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        let text = |description: &'static str| {
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                description: Some(description),
                ..MetaSchema::new("string")
            }))
        };
        let typed = |ty: &'static str, format: Option<&'static str>, description: &'static str| {
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                description: Some(description),
                format,
                ..MetaSchema::new(ty)
            }))
        };
        let format = MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some("Detected from the content when absent."),
            enum_items: ["csv", "ofx", "camt053", "mt940", "qif"]
                .into_iter()
                .map(Into::into)
                .collect(),
            ..MetaSchema::new("string")
        }));
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: "multipart/form-data",
                schema: MetaSchemaRef::Inline(Box::new(MetaSchema {
                    required: vec!["account_id", "file"],
                    properties: vec![
                        (
                            "account_id",
                            typed("string", Some("uuid"), "The account the rows go to."),
                        ),
                        ("format", format),
                        (
                            "mapping",
                            text(
                                "CSV only, JSON: {date, date_format?, amount | debit + credit, sign?, decimal?, thousands?, currency?, merchant?, description?, external_id?, category?, skip_rows?, delimiter?, encoding?, has_header?}.",
                            ),
                        ),
                        (
                            "profile_id",
                            typed("string", Some("uuid"), "A saved mapping to use."),
                        ),
                        (
                            "preview",
                            typed(
                                "boolean",
                                None,
                                "Read and report without writing a transaction.",
                            ),
                        ),
                        (
                            "skip_rejected",
                            typed(
                                "boolean",
                                None,
                                "Import the readable rows of a file with rejected ones.",
                            ),
                        ),
                        (
                            "file",
                            typed("string", Some("binary"), "The bank file, the last part."),
                        ),
                    ],
                    ..MetaSchema::new("object")
                })),
            }],
            required: true,
        })
    }

    fn register(_registry: &mut Registry) {}

    async fn from_request(
        request: &'a poem::Request,
        body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let boundary = request
            .content_type()
            .and_then(|c| multer::parse_boundary(c).ok());
        Ok(ImportUpload {
            body: body.take()?,
            boundary,
        })
    }
}
