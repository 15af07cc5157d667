//! Rows that arrive in bulk from a file or a bank (DESIGN.md §6): deduplicated by the one
//! fingerprint against every row the account ever had (deleted ones too), written set by
//! set with their terms, day deltas and balances, and taken back as a whole when an
//! import is reverted. Imports and bank sync both write through here.

use std::collections::{BTreeMap, HashMap};

use kernel::TenantTx;
use uuid::Uuid;

use crate::{
    Ledger, LedgerError,
    domain::{Incoming, MatchedBy, Outcome, TransactionSource, terms},
    store,
};

/// Rows one statement writes: big enough to amortise the round trip, small enough for the
/// arrays to stay cheap.
pub(crate) const BATCH: usize = 2_000;

/// Terms one statement writes (a row has four or five).
const TERM_BATCH: usize = 20_000;

/// What an import's revert did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reverted {
    /// Soft-deleted, with their balances and terms taken back.
    pub deleted: Vec<Uuid>,
    /// Kept: a person edited them (or linked them into a transfer) after the import.
    pub kept: Vec<Uuid>,
}

impl Ledger {
    /// Which of `rows` the account already has, without writing anything (an import's
    /// preview): for each row, the transaction it duplicates and the rule that matched.
    /// Rows of the same batch count too: a provider id given twice is one transaction.
    pub async fn duplicates(
        &self,
        tx: &mut TenantTx,
        account_id: Uuid,
        rows: &[Incoming],
    ) -> Result<Vec<Option<(Uuid, MatchedBy)>>, LedgerError> {
        let tenant = tx.tenant_id();
        store::account(tx.conn(), tenant, account_id, false)
            .await?
            .ok_or(LedgerError::NotFound)?;
        self.known(tx, account_id, rows).await
    }

    /// [`Ledger::duplicates`] of an account already read.
    async fn known(
        &self,
        tx: &mut TenantTx,
        account_id: Uuid,
        rows: &[Incoming],
    ) -> Result<Vec<Option<(Uuid, MatchedBy)>>, LedgerError> {
        let tenant = tx.tenant_id();
        store::plan_each_statement(tx.conn(), true).await?;
        let mut out = vec![None; rows.len()];
        for (chunk_no, chunk) in rows.chunks(BATCH).enumerate() {
            let base = chunk_no * BATCH;
            let external: Vec<Option<String>> =
                chunk.iter().map(|r| r.external_id.clone()).collect();
            let prints: Vec<Vec<u8>> = chunk.iter().map(|r| r.fingerprint.0.to_vec()).collect();
            for hit in store::known_rows(tx.conn(), tenant, account_id, &external, &prints).await? {
                out[base + hit.ordinal as usize] =
                    Some((hit.transaction_id, MatchedBy::from_db(&hit.matched_by)));
            }
        }
        // The same provider id twice in one batch: the later row duplicates the earlier.
        let mut first: HashMap<&str, usize> = HashMap::new();
        let mut same = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if out[i].is_some() {
                continue;
            }
            if let Some(id) = row.external_id.as_deref() {
                match first.get(id) {
                    Some(&earlier) => same.push((i, earlier)),
                    None => {
                        first.insert(id, i);
                    }
                }
            }
        }
        // Marked with a nil id: the caller of `duplicates` sees "an earlier row of this
        // batch"; `ingest` replaces it with that row's new id.
        for (i, earlier) in same {
            out[i] = Some((batch_marker(earlier), MatchedBy::ProviderId));
        }
        store::plan_each_statement(tx.conn(), false).await?;
        Ok(out)
    }

    /// Writes the rows the account does not have yet, all in the caller's transaction:
    /// the transactions (uncategorised, `source` as given, `import_id` when an import
    /// brings them), their search terms, the day deltas and the balances. Concurrent
    /// ingests into one account queue on the account's row, so two imports of one file
    /// cannot both insert it.
    pub async fn ingest(
        &self,
        tx: &mut TenantTx,
        account_id: Uuid,
        source: TransactionSource,
        import_id: Option<Uuid>,
        rows: &[Incoming],
    ) -> Result<Vec<Outcome>, LedgerError> {
        let tenant = tx.tenant_id();
        let account = store::account(tx.conn(), tenant, account_id, true)
            .await?
            .ok_or(LedgerError::NotFound)?;
        if account.archived_at.is_some() {
            return Err(LedgerError::AccountArchived);
        }
        let started = std::time::Instant::now();
        let known = self.known(tx, account_id, rows).await?;
        let deduplicated = started.elapsed();
        let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut fresh: Vec<usize> = Vec::new();
        for (i, hit) in known.iter().enumerate() {
            outcomes.push(match hit {
                Some((of, matched_by)) => Outcome::Duplicate {
                    of: batch_index(*of).map_or(*of, |earlier| ids[earlier]),
                    matched_by: *matched_by,
                },
                None => {
                    fresh.push(i);
                    Outcome::Inserted(ids[i])
                }
            });
        }
        let currency = account.currency.code().to_string();
        let written: Vec<(&Incoming, Uuid)> = fresh.iter().map(|&i| (&rows[i], ids[i])).collect();
        let terms_took = self
            .write_rows(tx, account_id, &currency, source, import_id, &written)
            .await?;
        if !fresh.is_empty() {
            let arrival = match import_id {
                Some(import) => crate::Arrival::Import(import),
                None => crate::Arrival::Transactions(fresh.iter().map(|&i| ids[i]).collect()),
            };
            self.arrived(tx, arrival);
        }
        tracing::debug!(
            rows = rows.len(),
            inserted = fresh.len(),
            dedup_ms = deduplicated.as_millis() as u64,
            terms_ms = terms_took.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "ingested"
        );
        Ok(outcomes)
    }

    /// Writes new rows of one account with their fingerprints as given: the transactions,
    /// their search terms (sorted, in large statements, each term counted once), the day
    /// deltas and one balance update. Returns how long the terms took.
    pub(crate) async fn write_rows(
        &self,
        tx: &mut TenantTx,
        account_id: Uuid,
        currency: &str,
        source: TransactionSource,
        import_id: Option<Uuid>,
        rows: &[(&Incoming, Uuid)],
    ) -> Result<std::time::Duration, LedgerError> {
        let tenant = tx.tenant_id();
        self.count_new(tx, source, rows.len()).await?;
        if !rows.is_empty() {
            self.changed(tx);
        }
        let mut days: BTreeMap<chrono::NaiveDate, (i64, i64)> = BTreeMap::new();
        let mut words: Vec<(String, chrono::NaiveDate, Uuid)> = Vec::new();
        for chunk in rows.chunks(BATCH) {
            let mut batch = store::NewRows::default();
            for &(row, id) in chunk {
                let merchant = crate::domain::normalise_merchant(row.merchant.clone());
                let description = row.description.trim().to_string();
                for term in terms(&[merchant.as_deref().unwrap_or(""), &description]) {
                    words.push((term, row.date, id));
                }
                let status = row.status.as_str();
                let day = days.entry(row.date).or_default();
                if status == "pending" {
                    day.1 += row.amount;
                } else {
                    day.0 += row.amount;
                }
                batch.ids.push(id);
                batch.dates.push(row.date);
                batch.value_dates.push(row.value_date);
                batch.amounts.push(row.amount);
                batch.merchants.push(merchant);
                batch.descriptions.push(description);
                batch.statuses.push(status.to_string());
                batch.external_ids.push(row.external_id.clone());
                batch.fingerprints.push(row.fingerprint.0.to_vec());
            }
            store::insert_rows(
                tx.conn(),
                tenant,
                account_id,
                currency,
                source.as_str(),
                import_id,
                &batch,
            )
            .await?;
        }
        // The terms in index order, in large statements; then each term counted once.
        let terms_started = std::time::Instant::now();
        words.sort_unstable();
        let mut counts: Vec<(String, i64)> = Vec::new();
        for chunk in words.chunks(TERM_BATCH) {
            let mut batch = store::NewTerms::default();
            for (term, date, id) in chunk {
                match counts.last_mut() {
                    Some((last, n)) if last == term => *n += 1,
                    _ => counts.push((term.clone(), 1)),
                }
                batch.transaction_ids.push(*id);
                batch.dates.push(*date);
                batch.terms.push(term.clone());
            }
            store::insert_terms(tx.conn(), tenant, account_id, &batch).await?;
        }
        let (names, ns): (Vec<String>, Vec<i64>) = counts.into_iter().unzip();
        for (names, ns) in names.chunks(TERM_BATCH).zip(ns.chunks(TERM_BATCH)) {
            store::count_terms(tx.conn(), tenant, names, ns).await?;
        }
        let terms_took = terms_started.elapsed();
        let (day_list, posted, pending) = split_days(&days);
        store::move_balances_by_day(tx.conn(), tenant, account_id, &day_list, &posted, &pending)
            .await?;
        Ok(terms_took)
    }

    /// Takes an import back: its rows nobody has edited since are soft-deleted (their
    /// terms, day deltas and balances with them; their fingerprints stay, so the same file
    /// does not bring them back unasked); edited ones are kept and named.
    pub async fn revert_import(
        &self,
        tx: &mut TenantTx,
        import_id: Uuid,
    ) -> Result<Reverted, LedgerError> {
        let tenant = tx.tenant_id();
        self.changed(tx);
        let kept = store::edited_rows_of_import(tx.conn(), tenant, import_id).await?;
        let deleted = store::delete_rows_of_import(tx.conn(), tenant, import_id).await?;
        let ids: Vec<Uuid> = deleted.iter().map(|d| d.id).collect();
        for chunk in ids.chunks(BATCH) {
            store::remove_terms_of(tx.conn(), tenant, chunk).await?;
        }
        let mut by_account: BTreeMap<Uuid, BTreeMap<chrono::NaiveDate, (i64, i64)>> =
            BTreeMap::new();
        for row in &deleted {
            let day = by_account
                .entry(row.account_id)
                .or_default()
                .entry(row.date)
                .or_default();
            if row.status == "pending" {
                day.1 -= row.amount;
            } else {
                day.0 -= row.amount;
            }
        }
        for (account, days) in &by_account {
            let (day_list, posted, pending) = split_days(days);
            store::move_balances_by_day(tx.conn(), tenant, *account, &day_list, &posted, &pending)
                .await?;
        }
        Ok(Reverted { deleted: ids, kept })
    }
}

/// Day deltas as the arrays the store takes.
fn split_days(
    days: &BTreeMap<chrono::NaiveDate, (i64, i64)>,
) -> (Vec<chrono::NaiveDate>, Vec<i64>, Vec<i64>) {
    let mut list = Vec::with_capacity(days.len());
    let mut posted = Vec::with_capacity(days.len());
    let mut pending = Vec::with_capacity(days.len());
    for (day, (p, q)) in days {
        list.push(*day);
        posted.push(*p);
        pending.push(*q);
    }
    (list, posted, pending)
}

/// A duplicate of the `i`-th row of the same batch, as [`Ledger::duplicates`] reports it:
/// the nil UUID's neighbourhood, which no stored transaction has (ids are v7).
fn batch_marker(i: usize) -> Uuid {
    Uuid::from_u128(i as u128)
}

/// The batch row a [`batch_marker`] names.
pub fn batch_index(id: Uuid) -> Option<usize> {
    let n = id.as_u128();
    (n < u128::from(u32::MAX)).then_some(n as usize)
}
