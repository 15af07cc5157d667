//! A bank sync's changes to one account, applied together in the caller's transaction
//! (DESIGN.md §6, INTEGRATIONS.md §2): new rows deduplicated through the one fingerprint,
//! pending rows turned into the posted ones that replace them (keeping a person's edits),
//! changed rows updated where no person locked the field, removed rows soft-deleted.
//!
//! A synced row's fingerprint ordinal counts the account's rows, not only the page's: the
//! ordinal is the lowest whose fingerprint no row of the same provider id space holds and
//! no earlier row of this update took. So two identical coffees synced on two days are two
//! rows (ordinals 0 and 1), and the same coffees synced again through a new connection to
//! the same account (a re-link: new provider ids) match them one for one instead of being
//! added again; a file imported later matches them as a file's own ordinals would.

use std::collections::{HashMap, HashSet};

use kernel::TenantTx;
use uuid::Uuid;

use crate::{
    Ledger, LedgerError,
    domain::{Editor, Fingerprint, Incoming, TransactionChanges, TransactionSource},
    ingest::BATCH,
    store,
};

/// A transaction a bank sync adds.
#[derive(Debug, Clone)]
pub struct Synced {
    /// Its `fingerprint` is recomputed here (see the module doc); give any.
    pub row: Incoming,
    /// The provider id of the pending transaction it replaces (Plaid
    /// `pending_transaction_id`, prefixed like `row.external_id`).
    pub replaces: Option<String>,
}

/// One whole update of an account from its bank.
#[derive(Debug, Clone, Default)]
pub struct BankChanges {
    pub added: Vec<Synced>,
    /// Rows the bank changed, by provider id; one the account never had is added.
    pub modified: Vec<Incoming>,
    /// Provider ids of rows the bank no longer has.
    pub removed: Vec<String>,
}

/// What an update did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// New rows.
    pub inserted: Vec<Uuid>,
    /// Already there by provider id (a re-sync), or deleted by a person and kept so.
    pub present: u64,
    /// Matched a row from elsewhere (an import, an earlier connection) by fingerprint.
    pub linked: u64,
    /// Pending rows now posted, with their edits.
    pub posted: u64,
    pub modified: u64,
    pub removed: u64,
    /// Removals and changes that found nothing to act on, or a transfer leg kept.
    pub ignored: u64,
}

/// How a new synced row was placed.
#[derive(Debug, Clone, Copy)]
enum Placed {
    Fresh(Fingerprint),
    Linked(Uuid),
}

/// The provider id space of an id: `plaid.<item>` of `plaid.<item>:<id>`.
fn space(external_id: Option<&str>) -> Option<&str> {
    external_id.map(|e| e.split(':').next().unwrap_or(e))
}

impl Ledger {
    /// Applies one update of an account from its bank, all in `tx`; no event per row (the
    /// sync writes one summary). Locked fields stay; a transfer leg is neither resized
    /// nor removed.
    pub async fn apply_bank_changes(
        &self,
        tx: &mut TenantTx,
        account_id: Uuid,
        changes: BankChanges,
    ) -> Result<SyncOutcome, LedgerError> {
        let tenant = tx.tenant_id();
        let account = store::account(tx.conn(), tenant, account_id, true)
            .await?
            .ok_or(LedgerError::NotFound)?;
        if account.archived_at.is_some() {
            return Err(LedgerError::AccountArchived);
        }
        store::plan_each_statement(tx.conn(), true).await?;
        let currency = account.currency;
        let BankChanges {
            added,
            modified,
            removed,
        } = changes;
        let mut out = SyncOutcome::default();

        // Every provider id the update names, as the account has them (live first).
        let mut names: Vec<String> = Vec::new();
        for s in &added {
            names.extend(s.row.external_id.clone());
            names.extend(s.replaces.clone());
        }
        names.extend(modified.iter().filter_map(|r| r.external_id.clone()));
        names.extend(removed.iter().cloned());
        names.sort_unstable();
        names.dedup();
        let mut known: HashMap<String, store::ExternalRow> = HashMap::new();
        for chunk in names.chunks(BATCH) {
            for row in store::by_external(tx.conn(), tenant, account_id, chunk).await? {
                known.entry(row.external_id.clone()).or_insert(row);
            }
        }

        // Changed rows; one never seen is new (and replaces an earlier version of itself
        // in this update: the last version wins).
        let mut added = added;
        for row in modified {
            let Some(ext) = row.external_id.clone() else {
                out.ignored += 1;
                continue;
            };
            match known.get(&ext) {
                Some(found) if !found.deleted => {
                    self.resync(tx, found, &row).await?;
                    out.modified += 1;
                }
                Some(_) => out.present += 1,
                None => match added
                    .iter_mut()
                    .find(|s| s.row.external_id.as_deref() == Some(ext.as_str()))
                {
                    Some(earlier) => earlier.row = row,
                    None => added.push(Synced {
                        row,
                        replaces: None,
                    }),
                },
            }
        }

        // New rows: those known by provider id are there already.
        let mut fresh: Vec<Synced> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for s in added {
            match s.row.external_id.as_deref() {
                Some(ext) if known.contains_key(ext) || !seen.insert(ext.to_string()) => {
                    out.present += 1;
                }
                _ => fresh.push(s),
            }
        }
        // The live pending row each replaces (each pending row replaced once).
        let mut consumed: HashSet<Uuid> = HashSet::new();
        let pendings: Vec<Option<&store::ExternalRow>> = fresh
            .iter()
            .map(|s| {
                s.replaces
                    .as_deref()
                    .and_then(|p| known.get(p))
                    .filter(|p| !p.deleted && consumed.insert(p.id))
            })
            .collect();
        let replacing: Vec<Option<Uuid>> = pendings.iter().map(|p| p.map(|p| p.id)).collect();
        let placed = self
            .place(tx, account_id, currency, &fresh, &replacing)
            .await?;
        store::plan_each_statement(tx.conn(), false).await?;

        // Pending rows replaced by their posted ones keep their id and a person's edits.
        let mut handled: HashSet<String> = HashSet::new();
        let mut inserts: Vec<(Incoming, Uuid)> = Vec::new();
        for ((s, placed), pending) in fresh.iter().zip(placed).zip(pendings) {
            let ext = s.row.external_id.as_deref();
            match (placed, pending) {
                (Placed::Fresh(fingerprint), Some(pending)) => {
                    self.resync(tx, pending, &s.row).await?;
                    if let Some(ext) = ext {
                        store::set_provider_identity(
                            tx.conn(),
                            tenant,
                            pending.id,
                            ext,
                            Some(&fingerprint.0),
                        )
                        .await?;
                    }
                    handled.insert(pending.external_id.clone());
                    out.posted += 1;
                }
                (Placed::Linked(of), pending) => {
                    // The posted transaction is here already (imported, or synced through an
                    // earlier connection): it takes the bank's id, so the bank's later
                    // changes and removals find it; a pending row it replaces goes.
                    if let Some(ext) = ext {
                        store::set_provider_identity(tx.conn(), tenant, of, ext, None).await?;
                    }
                    if let Some(pending) = pending {
                        if pending.transfer_id.is_none() {
                            self.delete_row(tx, pending.id).await?;
                        }
                        handled.insert(pending.external_id.clone());
                    }
                    out.linked += 1;
                }
                (Placed::Fresh(fingerprint), None) => {
                    let mut row = s.row.clone();
                    row.fingerprint = fingerprint;
                    inserts.push((row, Uuid::now_v7()));
                }
            }
        }
        if !inserts.is_empty() {
            let rows: Vec<(&Incoming, Uuid)> = inserts.iter().map(|(r, id)| (r, *id)).collect();
            self.write_rows(
                tx,
                account_id,
                currency.code(),
                TransactionSource::Sync,
                None,
                &rows,
            )
            .await?;
            out.inserted = inserts.iter().map(|(_, id)| *id).collect();
            self.arrived(tx, crate::Arrival::Transactions(out.inserted.clone()));
        }

        // Rows the bank no longer has (each once).
        let mut removed = removed;
        removed.sort_unstable();
        removed.dedup();
        for ext in removed {
            if handled.contains(&ext) {
                continue;
            }
            match known.get(&ext) {
                Some(found) if !found.deleted && found.transfer_id.is_none() => {
                    self.delete_row(tx, found.id).await?;
                    out.removed += 1;
                }
                _ => out.ignored += 1,
            }
        }
        Ok(out)
    }

    /// Brings a known row to what the bank now says, where no person locked the field. A
    /// transfer leg keeps its amount; so does a row a person split, whose parts would no
    /// longer add up (the balance drift then shows the difference).
    async fn resync(
        &self,
        tx: &mut TenantTx,
        found: &store::ExternalRow,
        row: &Incoming,
    ) -> Result<(), LedgerError> {
        let changes = |amount: bool| TransactionChanges {
            date: Some(row.date),
            amount: (amount && found.transfer_id.is_none()).then_some(row.amount),
            merchant: Some(row.merchant.clone()),
            description: Some(row.description.clone()),
            status: Some(row.status),
            ..TransactionChanges::default()
        };
        match self
            .update_with(
                tx,
                found.id,
                None,
                changes(true),
                Editor::Automation,
                None,
                false,
            )
            .await
        {
            Err(LedgerError::Invalid(_)) => {
                self.update_with(
                    tx,
                    found.id,
                    None,
                    changes(false),
                    Editor::Automation,
                    None,
                    false,
                )
                .await?;
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// Places new rows by fingerprint, in order (see the module doc): each either matches
    /// a row from another id space (linked) or takes the lowest free ordinal. The text is
    /// what the bank wrote (its description; a provider's merchant name is its own
    /// enrichment). A row's own pending row (`replacing`) holds nothing: its fingerprint
    /// passes to the posted row.
    async fn place(
        &self,
        tx: &mut TenantTx,
        account_id: Uuid,
        currency: kernel::Currency,
        rows: &[Synced],
        replacing: &[Option<Uuid>],
    ) -> Result<Vec<Placed>, LedgerError> {
        let tenant = tx.tenant_id();
        let texts: Vec<&str> = rows.iter().map(|s| s.row.description.as_str()).collect();
        let mut ordinals = vec![0u32; rows.len()];
        let mut placed: Vec<Option<Placed>> = vec![None; rows.len()];
        let mut taken: HashSet<[u8; 32]> = HashSet::new();
        // Each round asks for every open row's next candidate at once; a row moves on only
        // past a fingerprint its own id space or this update holds, so rounds are few.
        for _round in 0..10_000 {
            let open: Vec<usize> = (0..rows.len()).filter(|&i| placed[i].is_none()).collect();
            if open.is_empty() {
                break;
            }
            let candidates: Vec<Fingerprint> = open
                .iter()
                .map(|&i| {
                    let r = &rows[i].row;
                    Fingerprint::of(
                        account_id,
                        r.date,
                        r.amount,
                        currency,
                        texts[i],
                        ordinals[i],
                    )
                })
                .collect();
            let mut held: HashMap<Vec<u8>, Vec<(Uuid, Option<String>)>> = HashMap::new();
            let prints: Vec<Vec<u8>> = candidates.iter().map(|f| f.0.to_vec()).collect();
            for chunk in prints.chunks(BATCH) {
                for row in store::by_fingerprint(tx.conn(), tenant, account_id, chunk).await? {
                    held.entry(row.fingerprint)
                        .or_default()
                        .push((row.id, row.external_id));
                }
            }
            for (&i, fingerprint) in open.iter().zip(&candidates) {
                if taken.contains(&fingerprint.0) {
                    ordinals[i] += 1;
                    continue;
                }
                let own = space(rows[i].row.external_id.as_deref());
                match held.get(&fingerprint.0[..]) {
                    None => {
                        taken.insert(fingerprint.0);
                        placed[i] = Some(Placed::Fresh(*fingerprint));
                    }
                    Some(holders) => {
                        let other = holders.iter().find(|(id, ext)| {
                            Some(*id) != replacing[i]
                                && (own.is_none() || ext.is_none() || space(ext.as_deref()) != own)
                        });
                        let only_own_pending =
                            holders.iter().all(|(id, _)| Some(*id) == replacing[i]);
                        if only_own_pending {
                            taken.insert(fingerprint.0);
                            placed[i] = Some(Placed::Fresh(*fingerprint));
                            continue;
                        }
                        taken.insert(fingerprint.0);
                        match other {
                            Some((id, _)) => placed[i] = Some(Placed::Linked(*id)),
                            None => ordinals[i] += 1,
                        }
                    }
                }
            }
        }
        placed
            .into_iter()
            .map(|p| p.ok_or_else(|| LedgerError::invalid("rows", "too many identical rows")))
            .collect()
    }
}

impl Ledger {
    /// Records the balance the bank reports for an account (its `reported_balance`) and
    /// returns the account, whose `balance` is the computed one beside it. With
    /// `calibrate` (an account a connection opened, on its first sync) the opening balance
    /// moves so that the two agree: the history before the bank's window is not ours.
    pub async fn report_balance(
        &self,
        tx: &mut TenantTx,
        account_id: Uuid,
        reported: i64,
        calibrate: bool,
    ) -> Result<crate::Account, LedgerError> {
        let tenant = tx.tenant_id();
        store::account(tx.conn(), tenant, account_id, true)
            .await?
            .ok_or(LedgerError::NotFound)?;
        Ok(store::report_balance(tx.conn(), tenant, account_id, reported, calibrate).await?)
    }
}
