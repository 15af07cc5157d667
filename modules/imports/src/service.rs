//! The imports' rules. Every function takes the caller's transaction first (a route's, or
//! the job's own); the run itself ([`Imports::run`]) opens its transactions: the staging
//! batches commit one by one (progress moves), the promotion is one transaction.

use audit::{NewEvent, Record};
use jobs::{Enqueue, NewJob};
use kernel::{Actor, Db, Keyset, Page, TenantId, TenantTx};
use ledger::{Ledger, MatchedBy, Outcome, TransactionSource};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    ImportError,
    domain::{
        Import, ImportFailure, ImportRow, ImportStatus, ImportWarning, NewImport, Profile,
        Reversal, RowState, format_from_db, format_str,
    },
    formats::{Format, csv::Mapping},
    pipeline::{self, Reading, Staged, Target},
    store,
};

/// The largest file an import takes (API.md): 50 MiB.
pub const MAX_FILE_BYTES: usize = 50 * 1024 * 1024;
/// The uploaded file is stored this many bytes at a time.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Staged rows are committed this many at a time (each commit moves `progress`).
const STAGE_BATCH: usize = 5_000;
/// The job that reads an import.
pub const RUN_JOB: &str = "imports.run";

/// An upload in progress: the file goes to the tenant's store as it arrives.
pub struct Upload {
    id: Uuid,
    account_id: Uuid,
    format: Option<Format>,
    size: usize,
    seq: i32,
    buffer: Vec<u8>,
    head: Vec<u8>,
    digest: Sha256,
}

/// A created import and the job that reads it.
#[derive(Debug, Clone, Copy)]
pub struct Created {
    pub import_id: Uuid,
    pub job_id: Uuid,
}

/// The imports service.
#[derive(Clone, Default)]
pub struct Imports {
    ledger: Ledger,
}

impl Imports {
    pub fn new(ledger: Ledger) -> Imports {
        Imports { ledger }
    }

    /// Starts an upload into an account the caller can see (404 otherwise, 409 when it is
    /// archived); the bytes follow with [`Imports::write`], then [`Imports::finish`], all in
    /// the caller's transaction: nothing is kept unless the whole file arrived.
    pub async fn start(&self, tx: &mut TenantTx, new: NewImport) -> Result<Upload, ImportError> {
        let account = self
            .ledger
            .account(tx, new.account_id)
            .await
            .map_err(|e| match e {
                ledger::LedgerError::NotFound => ImportError::invalid(
                    "account_id",
                    "names no account of this tenant that you can see",
                ),
                other => other.into(),
            })?;
        if account.archived_at.is_some() {
            return Err(ledger::LedgerError::AccountArchived.into());
        }
        if let Some(mapping) = &new.mapping {
            check_mapping(mapping)?;
        }
        let tenant = tx.tenant_id();
        if let Some(profile) = new.profile_id {
            store::profile(tx.conn(), tenant, profile)
                .await?
                .ok_or_else(|| ImportError::invalid("profile_id", "names no import profile"))?;
        }
        let id = Uuid::now_v7();
        let created_by = match tx.context().actor {
            Actor::User(u) => Some(u.as_uuid()),
            _ => None,
        };
        store::insert_import(
            tx.conn(),
            tenant,
            store::NewImportRecord {
                id,
                account_id: account.id,
                format: new.format.map(format_str),
                preview: new.preview,
                skip_rejected: new.skip_rejected,
                mapping: new.mapping.as_ref().map(mapping_json),
                profile_id: new.profile_id,
                file_name: new.file_name.as_deref(),
                created_by,
            },
        )
        .await?;
        Ok(Upload {
            id,
            account_id: account.id,
            format: new.format,
            size: 0,
            seq: 0,
            buffer: Vec::with_capacity(CHUNK_BYTES),
            head: Vec::new(),
            digest: Sha256::new(),
        })
    }

    /// Adds bytes of the file; past [`MAX_FILE_BYTES`] the upload fails (`413`).
    pub async fn write(
        &self,
        tx: &mut TenantTx,
        upload: &mut Upload,
        bytes: &[u8],
    ) -> Result<(), ImportError> {
        upload.size += bytes.len();
        if upload.size > MAX_FILE_BYTES {
            return Err(ImportError::TooLarge);
        }
        upload.digest.update(bytes);
        if upload.head.len() < 4096 {
            let take = (4096 - upload.head.len()).min(bytes.len());
            upload.head.extend_from_slice(&bytes[..take]);
        }
        upload.buffer.extend_from_slice(bytes);
        while upload.buffer.len() >= CHUNK_BYTES {
            let rest = upload.buffer.split_off(CHUNK_BYTES);
            let chunk = std::mem::replace(&mut upload.buffer, rest);
            self.flush(tx, upload, &chunk).await?;
        }
        Ok(())
    }

    async fn flush(
        &self,
        tx: &mut TenantTx,
        upload: &mut Upload,
        chunk: &[u8],
    ) -> Result<(), ImportError> {
        let tenant = tx.tenant_id();
        store::insert_chunk(
            tx.conn(),
            tenant,
            upload.id,
            upload.account_id,
            upload.seq,
            chunk,
        )
        .await?;
        upload.seq += 1;
        Ok(())
    }

    /// Ends the upload: an empty file or one of no format Balance reads is refused here
    /// (`422`); otherwise the import is queued for its job.
    pub async fn finish(
        &self,
        tx: &mut TenantTx,
        mut upload: Upload,
    ) -> Result<Created, ImportError> {
        if upload.size == 0 {
            return Err(ImportError::invalid("file", "is empty"));
        }
        let format = match upload.format.or_else(|| pipeline::detect(&upload.head)) {
            Some(f) => f,
            None => {
                return Err(ImportError::invalid(
                    "file",
                    "is none of the formats Balance reads (CSV, OFX/QFX, CAMT.053, MT940, QIF); name one with `format` if it is",
                ));
            }
        };
        let chunk = std::mem::take(&mut upload.buffer);
        if !chunk.is_empty() {
            self.flush(tx, &mut upload, &chunk).await?;
        }
        let job_id = tx.enqueue(run_job(upload.id));
        let digest: [u8; 32] = upload.digest.finalize().into();
        let tenant = tx.tenant_id();
        store::uploaded(
            tx.conn(),
            tenant,
            upload.id,
            upload.size as i64,
            &digest,
            format_str(format),
            job_id,
        )
        .await?;
        Ok(Created {
            import_id: upload.id,
            job_id,
        })
    }

    pub async fn import(&self, tx: &mut TenantTx, id: Uuid) -> Result<Import, ImportError> {
        let tenant = tx.tenant_id();
        let record = store::import(tx.conn(), tenant, id, false)
            .await?
            .ok_or(ImportError::NotFound)?;
        Ok(view(record))
    }

    pub async fn imports(
        &self,
        tx: &mut TenantTx,
        page: &Keyset,
    ) -> Result<Page<Import>, ImportError> {
        let tenant = tx.tenant_id();
        let rows = store::imports(tx.conn(), tenant, page.after(), page.fetch_limit()).await?;
        Ok(page.page(rows.into_iter().map(view).collect(), |i| {
            (i.created_at, i.id)
        }))
    }

    /// A page of an import's rows in one state (all when `None`), by row number.
    pub async fn rows(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        state: Option<RowState>,
        after: Option<i32>,
        limit: i64,
    ) -> Result<Vec<ImportRow>, ImportError> {
        let tenant = tx.tenant_id();
        store::import(tx.conn(), tenant, id, false)
            .await?
            .ok_or(ImportError::NotFound)?;
        let rows = store::rows(
            tx.conn(),
            tenant,
            id,
            state.map(RowState::as_str),
            after,
            limit,
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ImportRow {
                row: r.row_no,
                state: RowState::from_db(&r.state),
                date: r.date,
                value_date: r.value_date,
                amount: r.amount,
                merchant: r.merchant,
                description: r.description,
                external_id: r.external_id,
                category_hint: r.category_hint,
                transaction_id: r.transaction_id,
                matched_by: r
                    .matched_by
                    .as_deref()
                    .map(|m| match MatchedBy::from_db(m) {
                        MatchedBy::ProviderId => crate::domain::DuplicateRule::ProviderId,
                        MatchedBy::Fingerprint => crate::domain::DuplicateRule::Fingerprint,
                    }),
                field: r.field,
                reason: r.reason,
            })
            .collect())
    }

    /// Commits a previewed import (or one that failed for its rejected rows): it is read
    /// again and promoted; with `skip_rejected`, the rejected rows stay listed and the rest
    /// is imported.
    pub async fn commit(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        skip_rejected: bool,
    ) -> Result<Created, ImportError> {
        let tenant = tx.tenant_id();
        let record = store::import(tx.conn(), tenant, id, true)
            .await?
            .ok_or(ImportError::NotFound)?;
        let status = ImportStatus::from_db(&record.status);
        let failed_code = (status == ImportStatus::Failed)
            .then(|| {
                record
                    .error
                    .as_ref()
                    .and_then(|e| e.get("code"))
                    .and_then(Value::as_str)
            })
            .flatten();
        // Rows kept staged: rejected ones (commit with `skip_rejected`), or over the plan's
        // month (commit again once the plan allows them).
        let retryable = matches!(failed_code, Some("rejected_rows" | "plan_limit_reached"));
        if status != ImportStatus::Previewed && !retryable {
            return Err(ImportError::WrongState(format!(
                "The import is {}; only a previewed import, or one that failed for its rejected rows or the plan's limit, can be committed.",
                status.as_str()
            )));
        }
        // A preview knows how many rows are new: over the plan's month is `402` now.
        if status == ImportStatus::Previewed {
            self.ledger
                .check_room(tx, record.inserted.max(0) as usize)
                .await?;
        }
        let job_id = tx.enqueue(run_job(id));
        store::requeue(tx.conn(), tenant, id, skip_rejected, job_id).await?;
        Ok(Created {
            import_id: id,
            job_id,
        })
    }

    /// Reverts a completed import: its rows nobody has edited since are soft-deleted in
    /// this transaction (balances and search follow); edited ones are kept and named.
    pub async fn revert(&self, tx: &mut TenantTx, id: Uuid) -> Result<Reversal, ImportError> {
        let tenant = tx.tenant_id();
        let record = store::import(tx.conn(), tenant, id, true)
            .await?
            .ok_or(ImportError::NotFound)?;
        let status = ImportStatus::from_db(&record.status);
        if status != ImportStatus::Completed {
            return Err(ImportError::WrongState(format!(
                "The import is {}; only a completed import can be reverted.",
                status.as_str()
            )));
        }
        let reverted = self.ledger.revert_import(tx, id).await?;
        store::mark_reverted(tx.conn(), tenant, id).await?;
        tx.record(
            NewEvent::new("import.reverted")
                .resource("import", id)
                .payload(json!({
                    "account_id": record.account_id,
                    "deleted": reverted.deleted.len(),
                    "kept": reverted.kept.len(),
                    "deleted_digest": digest_of(&reverted.deleted),
                })),
        );
        Ok(Reversal {
            import_id: id,
            deleted: reverted.deleted.len(),
            kept: reverted.kept,
        })
    }

    /// Reads, stages and promotes (or previews) an import: the job's work. A re-run after
    /// a crash starts over from the stored file; a finished import is left as it is.
    pub async fn run(&self, db: &Db, tenant: TenantId, id: Uuid) -> Result<(), ImportError> {
        let started = std::time::Instant::now();
        let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
        let Some(record) = store::import(tx.conn(), tenant, id, true).await? else {
            return Ok(());
        };
        if !matches!(
            ImportStatus::from_db(&record.status),
            ImportStatus::Queued | ImportStatus::Running
        ) {
            tx.commit().await?;
            return Ok(());
        }
        store::start_run(tx.conn(), tenant, id).await?;
        let account = self.ledger.account(&mut tx, record.account_id).await?;
        let bytes = store::chunks(tx.conn(), tenant, id).await?.concat();
        let given = match record.mapping.clone() {
            Some(m) => Some(serde_json::from_value::<Mapping>(m).map_err(bad_stored)?),
            None => None,
        };
        let profile = match record.profile_id {
            Some(p) if given.is_none() => match store::profile(tx.conn(), tenant, p).await? {
                Some(p) => Some(serde_json::from_value::<Mapping>(p.mapping).map_err(bad_stored)?),
                None => None,
            },
            _ => None,
        };
        let remembered = match store::account_mapping(tx.conn(), tenant, account.id).await? {
            Some(m) => serde_json::from_value::<Mapping>(m).ok(),
            None => None,
        };
        tx.commit().await?;

        let target = Target {
            account_id: account.id,
            currency: account.currency,
            iban: account.iban.clone(),
        };
        let format = record.format.as_deref().and_then(format_from_db);
        let chosen = given.or(profile);
        let from_person = chosen.is_some();
        let reading = tokio::task::spawn_blocking(move || {
            let mapping = chosen.or(remembered.clone());
            match pipeline::read(&bytes, format, mapping.as_ref(), &target) {
                // The account's last mapping may not fit this file: the header decides then.
                Err(_) if !from_person && mapping.is_some() => {
                    pipeline::read(&bytes, format, None, &target)
                }
                other => other,
            }
        })
        .await
        .map_err(|e| ImportError::Problem(kernel::Problem::internal().with_cause(e)))?;
        let reading = match reading {
            Ok(r) => r,
            Err(e) => {
                return self
                    .fail(db, tenant, &record, "unreadable_file", &e.0, format, None)
                    .await;
            }
        };
        let read = started.elapsed();
        self.stage(db, tenant, &record, &reading).await?;
        let staged = started.elapsed();
        self.promote(db, tenant, &record, &reading).await?;
        tracing::info!(
            import_id = %id,
            rows = reading.rows.len(),
            read_ms = read.as_millis() as u64,
            stage_ms = (staged - read).as_millis() as u64,
            promote_ms = (started.elapsed() - staged).as_millis() as u64,
            "import run"
        );
        Ok(())
    }

    /// Writes the staged rows, a batch per transaction.
    async fn stage(
        &self,
        db: &Db,
        tenant: TenantId,
        record: &store::ImportRecord,
        reading: &Reading,
    ) -> Result<(), ImportError> {
        let total = reading.rows.len().max(1);
        let mut done = 0;
        for batch in reading.rows.chunks(STAGE_BATCH) {
            let mut rows = store::StagedRows::default();
            for staged in batch {
                rows.row_nos.push(staged.row() as i32);
                match staged {
                    Staged::Ready {
                        incoming, category, ..
                    } => {
                        rows.states.push("staged".into());
                        rows.dates.push(Some(incoming.date));
                        rows.value_dates.push(incoming.value_date);
                        rows.amounts.push(Some(incoming.amount));
                        rows.merchants.push(incoming.merchant.clone());
                        rows.descriptions.push(Some(incoming.description.clone()));
                        rows.external_ids.push(incoming.external_id.clone());
                        rows.categories.push(category.clone());
                        rows.fingerprints
                            .push(Some(incoming.fingerprint.0.to_vec()));
                        rows.fields.push(None);
                        rows.reasons.push(None);
                    }
                    Staged::Rejected { field, reason, .. } => {
                        rows.states.push("rejected".into());
                        rows.dates.push(None);
                        rows.value_dates.push(None);
                        rows.amounts.push(None);
                        rows.merchants.push(None);
                        rows.descriptions.push(None);
                        rows.external_ids.push(None);
                        rows.categories.push(None);
                        rows.fingerprints.push(None);
                        rows.fields.push(Some(field.clone()));
                        rows.reasons.push(Some(reason.clone()));
                    }
                }
            }
            done += batch.len();
            let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
            store::stage_rows(tx.conn(), tenant, record.id, record.account_id, &rows).await?;
            let progress = 0.05 + 0.75 * (done as f32 / total as f32);
            store::set_progress(tx.conn(), tenant, record.id, progress).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// The last step, in one transaction: a preview marks what would be duplicates; an
    /// import with rejected rows fails whole unless `skip_rejected`; otherwise the rows go
    /// to the ledger and every staged row records what it became.
    async fn promote(
        &self,
        db: &Db,
        tenant: TenantId,
        record: &store::ImportRecord,
        reading: &Reading,
    ) -> Result<(), ImportError> {
        let rejected = reading.rejected();
        let total = reading.rows.len();
        if rejected > 0 && !record.skip_rejected && !record.preview {
            let detail = format!(
                "{rejected} of {total} rows could not be read, so nothing was imported; the rejected rows are listed on the import: fix the file or the mapping, or commit the import with skip_rejected=true to import the other rows"
            );
            return self
                .fail(
                    db,
                    tenant,
                    record,
                    "rejected_rows",
                    &detail,
                    Some(reading.format),
                    Some(reading),
                )
                .await;
        }
        let ready: Vec<(i32, &ledger::Incoming)> = reading
            .rows
            .iter()
            .filter_map(|s| match s {
                Staged::Ready { row, incoming, .. } => Some((*row as i32, incoming)),
                Staged::Rejected { .. } => None,
            })
            .collect();
        let incoming: Vec<ledger::Incoming> = ready.iter().map(|(_, i)| (*i).clone()).collect();
        let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
        let current = store::import(tx.conn(), tenant, record.id, true)
            .await?
            .ok_or(ImportError::NotFound)?;
        if ImportStatus::from_db(&current.status) != ImportStatus::Running {
            tx.commit().await?;
            return Ok(());
        }
        let mut row_nos = Vec::with_capacity(ready.len());
        let mut states = Vec::with_capacity(ready.len());
        let mut ids = Vec::with_capacity(ready.len());
        let mut rules = Vec::with_capacity(ready.len());
        let (mut inserted, mut duplicates) = (0, 0);
        let status;
        if record.preview {
            let known = self
                .ledger
                .duplicates(&mut tx, record.account_id, &incoming)
                .await?;
            for ((row, _), hit) in ready.iter().zip(known) {
                match hit {
                    Some((of, by)) => {
                        duplicates += 1;
                        row_nos.push(*row);
                        states.push("duplicate".to_string());
                        ids.push(ledger::batch_index(of).is_none().then_some(of));
                        rules.push(Some(by.as_str().to_string()));
                    }
                    None => inserted += 1,
                }
            }
            status = ImportStatus::Previewed;
        } else {
            let outcomes = match self
                .ledger
                .ingest(
                    &mut tx,
                    record.account_id,
                    TransactionSource::Import,
                    Some(record.id),
                    &incoming,
                )
                .await
            {
                Ok(o) => o,
                Err(ledger::LedgerError::AccountArchived) => {
                    drop(tx);
                    return self
                        .fail(
                            db,
                            tenant,
                            record,
                            "account_archived",
                            "The account was archived before the import could be written; unarchive it and upload the file again.",
                            Some(reading.format),
                            None,
                        )
                        .await;
                }
                // Over the plan's monthly transactions: nothing is written, the rows stay
                // staged for a commit once the plan allows them.
                Err(ledger::LedgerError::Problem(p)) if p.code() == "plan_limit_reached" => {
                    drop(tx);
                    let detail = p.body().detail.unwrap_or_default();
                    return self
                        .fail(
                            db,
                            tenant,
                            record,
                            "plan_limit_reached",
                            &detail,
                            Some(reading.format),
                            Some(reading),
                        )
                        .await;
                }
                Err(e) => return Err(e.into()),
            };
            for ((row, _), outcome) in ready.iter().zip(outcomes) {
                row_nos.push(*row);
                match outcome {
                    Outcome::Inserted(id) => {
                        inserted += 1;
                        states.push("inserted".to_string());
                        ids.push(Some(id));
                        rules.push(None);
                    }
                    Outcome::Duplicate { of, matched_by } => {
                        duplicates += 1;
                        states.push("duplicate".to_string());
                        ids.push(Some(of));
                        rules.push(Some(matched_by.as_str().to_string()));
                    }
                }
            }
            status = ImportStatus::Completed;
        }
        let ledger_done = std::time::Instant::now();
        store::set_outcomes(
            tx.conn(),
            tenant,
            record.id,
            &row_nos,
            &states,
            &ids,
            &rules,
        )
        .await?;
        tracing::debug!(
            import_id = %record.id,
            outcomes_ms = ledger_done.elapsed().as_millis() as u64,
            "import outcomes recorded"
        );
        let warnings = warnings_json(reading);
        store::end_run(
            tx.conn(),
            tenant,
            record.id,
            store::Ending {
                status: status.as_str(),
                format: Some(format_str(reading.format)),
                encoding: Some(&reading.encoding),
                mapping: reading.mapping.as_ref().map(mapping_json),
                preset: reading.preset.as_deref(),
                rows_total: total as i32,
                inserted,
                duplicates,
                rejected: rejected as i32,
                warnings,
                error: None,
            },
        )
        .await?;
        if status == ImportStatus::Completed {
            if let Some(mapping) = &reading.mapping {
                store::remember_mapping(
                    tx.conn(),
                    tenant,
                    record.account_id,
                    &mapping_json(mapping),
                )
                .await?;
            }
            store::delete_chunks(tx.conn(), tenant, record.id).await?;
            let inserted_ids = store::inserted_ids(tx.conn(), tenant, record.id).await?;
            tx.record(
                NewEvent::new("import.completed")
                    .resource("import", record.id)
                    .payload(json!({
                        "account_id": record.account_id,
                        "format": format_str(reading.format),
                        "rows": total,
                        "inserted": inserted,
                        "duplicates": duplicates,
                        "rejected": rejected,
                        "inserted_digest": digest_of(&inserted_ids),
                    })),
            );
        }
        tx.commit().await?;
        Ok(())
    }

    /// Ends an import as failed, with nothing written to the ledger. With the reading, its
    /// rows stay staged (the rejected ones listed) and the file is kept for a commit with
    /// `skip_rejected`; otherwise the file is dropped.
    #[allow(clippy::too_many_arguments)]
    async fn fail(
        &self,
        db: &Db,
        tenant: TenantId,
        record: &store::ImportRecord,
        code: &str,
        detail: &str,
        format: Option<Format>,
        reading: Option<&Reading>,
    ) -> Result<(), ImportError> {
        let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
        store::end_run(
            tx.conn(),
            tenant,
            record.id,
            store::Ending {
                status: ImportStatus::Failed.as_str(),
                format: format.map(format_str),
                encoding: reading.map(|r| r.encoding.as_str()),
                mapping: reading.and_then(|r| r.mapping.as_ref()).map(mapping_json),
                preset: reading.and_then(|r| r.preset.as_deref()),
                rows_total: reading.map_or(0, |r| r.rows.len() as i32),
                inserted: 0,
                duplicates: 0,
                rejected: reading.map_or(0, |r| r.rejected() as i32),
                warnings: reading.map_or(json!([]), warnings_json),
                error: Some(json!(ImportFailure {
                    code: code.to_string(),
                    detail: detail.to_string(),
                })),
            },
        )
        .await?;
        if reading.is_none() {
            store::delete_chunks(tx.conn(), tenant, record.id).await?;
        }
        tx.record(
            NewEvent::new("import.failed")
                .resource("import", record.id)
                .payload(json!({
                    "account_id": record.account_id,
                    "code": code,
                    "rows": reading.map_or(0, |r| r.rows.len()),
                    "rejected": reading.map_or(0, |r| r.rejected()),
                })),
        );
        tx.commit().await?;
        Ok(())
    }

    // Profiles: saved CSV mappings.

    pub async fn create_profile(
        &self,
        tx: &mut TenantTx,
        name: &str,
        mapping: Mapping,
    ) -> Result<Profile, ImportError> {
        check_mapping(&mapping)?;
        let tenant = tx.tenant_id();
        let id = Uuid::now_v7();
        let row =
            store::insert_profile(tx.conn(), tenant, id, name.trim(), &mapping_json(&mapping))
                .await
                .map_err(name_taken)?;
        tx.record(
            NewEvent::new("import_profile.created")
                .resource("import_profile", id)
                .payload(json!({"name": row.name})),
        );
        profile_view(row)
    }

    pub async fn profiles(&self, tx: &mut TenantTx) -> Result<Vec<Profile>, ImportError> {
        let tenant = tx.tenant_id();
        store::profiles(tx.conn(), tenant)
            .await?
            .into_iter()
            .map(profile_view)
            .collect()
    }

    pub async fn profile(&self, tx: &mut TenantTx, id: Uuid) -> Result<Profile, ImportError> {
        let tenant = tx.tenant_id();
        profile_view(
            store::profile(tx.conn(), tenant, id)
                .await?
                .ok_or(ImportError::NotFound)?,
        )
    }

    /// Changes a profile's name or mapping; `expected` is the `If-Match` version.
    pub async fn update_profile(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        expected: Option<i64>,
        name: Option<String>,
        mapping: Option<Mapping>,
    ) -> Result<Profile, ImportError> {
        let current = self.profile(tx, id).await?;
        kernel::concurrency::check(expected, current.version)?;
        let name = name.map_or(current.name.clone(), |n| n.trim().to_string());
        let mapping = mapping.unwrap_or(current.mapping.clone());
        check_mapping(&mapping)?;
        let tenant = tx.tenant_id();
        let row = store::update_profile(tx.conn(), tenant, id, &name, &mapping_json(&mapping))
            .await
            .map_err(name_taken)?
            .ok_or(ImportError::NotFound)?;
        tx.record(
            NewEvent::new("import_profile.updated")
                .resource("import_profile", id)
                .payload(json!({"before": {"name": current.name}, "after": {"name": row.name}})),
        );
        profile_view(row)
    }

    pub async fn delete_profile(&self, tx: &mut TenantTx, id: Uuid) -> Result<(), ImportError> {
        let tenant = tx.tenant_id();
        if !store::delete_profile(tx.conn(), tenant, id).await? {
            return Err(ImportError::NotFound);
        }
        tx.record(NewEvent::new("import_profile.deleted").resource("import_profile", id));
        Ok(())
    }
}

fn run_job(import_id: Uuid) -> NewJob {
    NewJob::new("imports", RUN_JOB, json!({ "import_id": import_id }))
}

fn check_mapping(mapping: &Mapping) -> Result<(), ImportError> {
    mapping
        .check()
        .map_err(|reason| ImportError::invalid("mapping", reason))
}

fn mapping_json(mapping: &Mapping) -> Value {
    serde_json::to_value(mapping).unwrap_or(Value::Null)
}

fn bad_stored(e: serde_json::Error) -> ImportError {
    ImportError::Problem(kernel::Problem::internal().with_cause(e))
}

fn name_taken(e: sqlx::Error) -> ImportError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => ImportError::ProfileNameTaken,
        _ => e.into(),
    }
}

fn profile_view(r: store::ProfileRecord) -> Result<Profile, ImportError> {
    Ok(Profile {
        id: r.id,
        name: r.name,
        mapping: serde_json::from_value(r.mapping).map_err(bad_stored)?,
        version: r.version,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

fn warnings_json(reading: &Reading) -> Value {
    json!(
        reading
            .warnings
            .iter()
            .map(|w| ImportWarning {
                row: w.row,
                message: w.message.clone(),
            })
            .collect::<Vec<_>>()
    )
}

/// A digest of ids for an audit event: SHA-256 over them in order, hex.
fn digest_of(ids: &[Uuid]) -> String {
    let mut hash = Sha256::new();
    for id in ids {
        hash.update(id.as_bytes());
    }
    let out: [u8; 32] = hash.finalize().into();
    out.iter().map(|b| format!("{b:02x}")).collect()
}

fn view(r: store::ImportRecord) -> Import {
    Import {
        id: r.id,
        account_id: r.account_id,
        format: r.format.as_deref().and_then(format_from_db).map(Into::into),
        status: ImportStatus::from_db(&r.status),
        preview: r.preview,
        skip_rejected: r.skip_rejected,
        preset: r.preset,
        profile_id: r.profile_id,
        file_name: r.file_name,
        file_size: r.file_size,
        encoding: r.encoding,
        progress: r.progress,
        rows: r.rows_total,
        inserted: r.inserted,
        duplicates: r.duplicates,
        rejected: r.rejected,
        warnings: serde_json::from_value(r.warnings).unwrap_or_default(),
        error: r.error.and_then(|e| serde_json::from_value(e).ok()),
        job_id: r.job_id,
        created_by: r.created_by,
        created_at: r.created_at,
        finished_at: r.finished_at,
        reverted_at: r.reverted_at,
    }
}
