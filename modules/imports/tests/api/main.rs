//! Imports through the service, without HTTP: an upload, then the job's run, as the
//! worker calls it. Every file of ../shared/fixtures/imports/ is imported here.

use std::sync::Arc;

use audit::{AuditLog, Keys};
use chrono::NaiveDate;
use imports::{ImportError, ImportStatus, Imports, NewImport, RowState};
use kernel::{Actor, Currency, Db, DisplayName, TenantId, TenantTx};
use ledger::{AccountKind, Iban, Ledger, NewAccount, TransactionSource};
use testkit::{db::TestDb, seed};
use uuid::Uuid;

struct Env {
    _db: TestDb,
    kdb: Db,
    imports: Imports,
    ledger: Ledger,
    tenant: TenantId,
}

impl Env {
    async fn new() -> Env {
        let db = TestDb::with_migrations().await.unwrap();
        let keys = Keys::from_seeds([("test-1", &[11u8; 32][..])]).unwrap();
        let hook: Arc<dyn kernel::CommitHook> = Arc::new(AuditLog::new(keys));
        let kdb = db.kernel_db([hook]).await.unwrap();
        let tenant = seed::tenant(&kdb, "Acme").await;
        Env {
            _db: db,
            kdb,
            imports: Imports::new(Ledger::new()),
            ledger: Ledger::new(),
            tenant,
        }
    }

    async fn tx(&self) -> TenantTx {
        TenantTx::begin(&self.kdb, self.tenant, Actor::System)
            .await
            .unwrap()
    }

    async fn account(&self, currency: &str, iban: Option<&str>) -> Uuid {
        let mut tx = self.tx().await;
        let a = self
            .ledger
            .create_account(
                &mut tx,
                NewAccount {
                    name: DisplayName::parse("name", &format!("{currency} account")).unwrap(),
                    kind: AccountKind::Checking,
                    currency: Currency::parse(currency).unwrap(),
                    opening_balance: 0,
                    opening_date: NaiveDate::from_ymd_opt(2000, 1, 1).unwrap(),
                    iban: iban.map(|i| Iban::parse("iban", i).unwrap()),
                    institution: None,
                },
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        a.id
    }

    /// Uploads `bytes` (in pieces, as a stream arrives) and runs the import's job.
    async fn import(&self, new: NewImport, bytes: &[u8]) -> Result<imports::Import, ImportError> {
        let mut tx = self.tx().await;
        let mut upload = self.imports.start(&mut tx, new).await?;
        for piece in bytes.chunks(300_000) {
            self.imports.write(&mut tx, &mut upload, piece).await?;
        }
        let created = self.imports.finish(&mut tx, upload).await?;
        tx.commit().await.unwrap();
        self.imports
            .run(&self.kdb, self.tenant, created.import_id)
            .await
            .unwrap();
        let mut tx = self.tx().await;
        let import = self
            .imports
            .import(&mut tx, created.import_id)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        Ok(import)
    }

    async fn import_file(&self, account: Uuid, bytes: &[u8]) -> imports::Import {
        self.import(
            NewImport {
                account_id: account,
                ..Default::default()
            },
            bytes,
        )
        .await
        .unwrap()
    }

    async fn rows(&self, import: Uuid, state: Option<RowState>) -> Vec<imports::ImportRow> {
        let mut tx = self.tx().await;
        let rows = self
            .imports
            .rows(&mut tx, import, state, None, 100_000)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        rows
    }

    /// Live transactions of an account: (date, amount, merchant, description).
    async fn ledger_rows(&self, account: Uuid) -> Vec<(NaiveDate, i64, Option<String>, String)> {
        let mut tx = self.tx().await;
        let rows: Vec<(NaiveDate, i64, Option<String>, String)> = sqlx::query_as(
            "SELECT date, amount, merchant, description FROM transactions
             WHERE tenant_id = $1 AND account_id = $2 AND deleted_at IS NULL
             ORDER BY date, amount, description",
        )
        .bind(self.tenant.as_uuid())
        .bind(account)
        .fetch_all(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
        rows
    }

    async fn balance(&self, account: Uuid) -> i64 {
        let mut tx = self.tx().await;
        let a = self.ledger.account(&mut tx, account).await.unwrap();
        tx.commit().await.unwrap();
        a.balance
    }
}

fn fixture(name: &str) -> Option<Vec<u8>> {
    let path = format!(
        "{}/../../../shared/fixtures/imports/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!("skipped: ../shared/fixtures absent ({path})");
            None
        }
    }
}

/// Every good fixture, with the currency of the account it belongs to.
const GOOD: &[(&str, &str)] = &[
    ("csv_us_schwab_checking.csv", "USD"),
    ("csv_us_capitalone_card.csv", "USD"),
    ("csv_de_commerzbank.csv", "EUR"),
    ("csv_de_gls_latin1.csv", "EUR"),
    ("csv_uk_card_utf8_bom.csv", "GBP"),
    ("csv_uk_monzo.csv", "GBP"),
    ("csv_de_n26.csv", "EUR"),
    ("csv_revolut_legacy.csv", "EUR"),
    ("latin1_umlauts.csv", "EUR"),
    ("csv_identical_rows.csv", "EUR"),
    ("ofx102_sgml_checking.ofx", "USD"),
    ("ofx200_xml_checking_suncorp.ofx", "AUD"),
    ("qfx102_creditcard_chase.qfx", "USD"),
    ("camt053_v02_de_vrbank.xml", "EUR"),
    ("camt053_v02_multi_statement.xml", "EUR"),
    ("camt053_v04_multicurrency.xml", "EUR"),
    ("mt940_nl_rabobank.sta", "EUR"),
    ("qif_bank_splits_cbb.qif", "USD"),
    ("qif_bank_categories_actual.qif", "USD"),
    ("qif_account_header_actual.qif", "USD"),
];

#[tokio::test]
async fn every_fixture_imports_and_importing_it_again_adds_nothing() {
    let env = Env::new().await;
    for (name, currency) in GOOD {
        let Some(bytes) = fixture(name) else { return };
        let account = env.account(currency, None).await;
        let first = env.import_file(account, &bytes).await;
        assert_eq!(
            first.status,
            ImportStatus::Completed,
            "{name}: {:?}",
            first.error
        );
        assert!(first.inserted > 0, "{name}");
        assert_eq!(
            first.rows,
            first.inserted + first.duplicates + first.rejected,
            "{name}"
        );
        let inserted = env.rows(first.id, Some(RowState::Inserted)).await;
        assert_eq!(inserted.len() as i32, first.inserted, "{name}");
        let live = env.ledger_rows(account).await;
        assert_eq!(live.len() as i32, first.inserted, "{name}");
        let sum: i64 = live.iter().map(|r| r.1).sum();
        assert_eq!(
            env.balance(account).await,
            sum,
            "{name}: the balance moved with the rows"
        );

        let again = env.import_file(account, &bytes).await;
        assert_eq!(again.status, ImportStatus::Completed, "{name}");
        assert_eq!(again.inserted, 0, "{name}: a re-import adds nothing");
        assert_eq!(again.duplicates, first.inserted, "{name}");
        for row in env.rows(again.id, Some(RowState::Duplicate)).await {
            assert!(
                row.transaction_id.is_some(),
                "{name}: a duplicate names its transaction"
            );
            assert!(row.matched_by.is_some(), "{name}");
        }
        assert_eq!(env.ledger_rows(account).await.len(), live.len(), "{name}");
    }
}

#[tokio::test]
async fn two_identical_purchases_stay_two_rows() {
    let env = Env::new().await;
    let Some(bytes) = fixture("csv_identical_rows.csv") else {
        return;
    };
    let account = env.account("EUR", None).await;
    let import = env.import_file(account, &bytes).await;
    let rows = env.ledger_rows(account).await;
    let mut same = 0;
    for (i, a) in rows.iter().enumerate() {
        if rows.iter().skip(i + 1).any(|b| a == b) {
            same += 1;
        }
    }
    assert!(same >= 1, "the identical rows are both kept: {rows:?}");
    assert_eq!(import.duplicates, 0);
}

#[tokio::test]
async fn an_overlapping_later_export_adds_only_its_new_rows() {
    let env = Env::new().await;
    let Some(bytes) = fixture("csv_revolut_legacy.csv") else {
        return;
    };
    let text = String::from_utf8(bytes).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 4, "the fixture has rows");
    let half = 1 + (lines.len() - 1) / 2;
    let earlier = lines[..half].join("\n") + "\n";
    let account = env.account("EUR", None).await;
    let first = env.import_file(account, earlier.as_bytes()).await;
    assert_eq!(first.status, ImportStatus::Completed, "{:?}", first.error);
    let later = env.import_file(account, text.as_bytes()).await;
    assert_eq!(later.duplicates, first.inserted);
    assert_eq!(later.inserted, later.rows - first.inserted - later.rejected);
    assert_eq!(
        env.ledger_rows(account).await.len() as i32,
        first.inserted + later.inserted
    );
}

#[tokio::test]
async fn a_deleted_row_is_not_brought_back_and_a_synced_row_is_not_doubled() {
    let env = Env::new().await;
    let Some(bytes) = fixture("csv_de_commerzbank.csv") else {
        return;
    };
    let account = env.account("EUR", None).await;
    let first = env.import_file(account, &bytes).await;
    let inserted = env.rows(first.id, Some(RowState::Inserted)).await;
    let gone = inserted[0].transaction_id.unwrap();
    let mut tx = env.tx().await;
    env.ledger.delete_transaction(&mut tx, gone).await.unwrap();
    tx.commit().await.unwrap();
    let again = env.import_file(account, &bytes).await;
    assert_eq!(again.inserted, 0, "the deleted row stays deleted");
    let dup = env.rows(again.id, Some(RowState::Duplicate)).await;
    assert!(dup.iter().any(|r| r.transaction_id == Some(gone)));

    // A bank sync brought a row first (its own provider id); the file's row is a duplicate.
    let other = env.account("EUR", None).await;
    let reading = imports::pipeline::read(
        &bytes,
        None,
        None,
        &imports::pipeline::Target {
            account_id: other,
            currency: Currency::parse("EUR").unwrap(),
            iban: None,
        },
    )
    .unwrap();
    let synced = reading
        .rows
        .iter()
        .find_map(|s| match s {
            imports::pipeline::Staged::Ready { incoming, .. } => Some(incoming.clone()),
            _ => None,
        })
        .unwrap();
    let mut tx = env.tx().await;
    let synced = ledger::Incoming {
        external_id: Some("plaid:tx_123".into()),
        ..synced
    };
    let out = env
        .ledger
        .ingest(&mut tx, other, TransactionSource::Sync, None, &[synced])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let ledger::Outcome::Inserted(synced_id) = out[0] else {
        panic!("the sync inserts")
    };
    let import = env.import_file(other, &bytes).await;
    assert_eq!(import.duplicates, 1);
    let dup = env.rows(import.id, Some(RowState::Duplicate)).await;
    assert_eq!(dup[0].transaction_id, Some(synced_id));
    assert_eq!(dup[0].matched_by, Some(imports::DuplicateRule::Fingerprint));
}

#[tokio::test]
async fn a_preview_writes_nothing_and_a_commit_imports_it() {
    let env = Env::new().await;
    let Some(bytes) = fixture("ofx102_sgml_checking.ofx") else {
        return;
    };
    let account = env.account("USD", None).await;
    let preview = env
        .import(
            NewImport {
                account_id: account,
                preview: true,
                ..Default::default()
            },
            &bytes,
        )
        .await
        .unwrap();
    assert_eq!(preview.status, ImportStatus::Previewed);
    assert!(preview.inserted > 0, "what would be inserted is counted");
    assert!(
        env.ledger_rows(account).await.is_empty(),
        "a preview writes no transaction"
    );
    let staged = env.rows(preview.id, Some(RowState::Staged)).await;
    assert_eq!(staged.len() as i32, preview.inserted);
    assert!(
        staged[0].date.is_some() && staged[0].amount.is_some(),
        "parsed rows are shown"
    );

    let mut tx = env.tx().await;
    env.imports
        .commit(&mut tx, preview.id, false)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    env.imports
        .run(&env.kdb, env.tenant, preview.id)
        .await
        .unwrap();
    let mut tx = env.tx().await;
    let done = env.imports.import(&mut tx, preview.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(done.status, ImportStatus::Completed);
    assert_eq!(done.inserted, preview.inserted);
    assert_eq!(env.ledger_rows(account).await.len() as i32, done.inserted);
}

#[tokio::test]
async fn a_revert_takes_back_unedited_rows_and_keeps_edited_ones() {
    let env = Env::new().await;
    let Some(bytes) = fixture("camt053_v02_de_vrbank.xml") else {
        return;
    };
    let account = env.account("EUR", None).await;
    let import = env.import_file(account, &bytes).await;
    assert_eq!(import.status, ImportStatus::Completed, "{:?}", import.error);
    let inserted = env.rows(import.id, Some(RowState::Inserted)).await;
    let edited = inserted[0].transaction_id.unwrap();
    let mut tx = env.tx().await;
    let kept = env
        .ledger
        .update_transaction(
            &mut tx,
            edited,
            None,
            ledger::TransactionChanges {
                notes: Some(Some("checked".into())),
                ..Default::default()
            },
            ledger::Editor::Person,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = env.tx().await;
    let reversal = env.imports.revert(&mut tx, import.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(reversal.kept, vec![edited]);
    assert_eq!(reversal.deleted as i32, import.inserted - 1);
    assert_eq!(env.ledger_rows(account).await.len(), 1);
    assert_eq!(
        env.balance(account).await,
        kept.amount,
        "the balances follow"
    );
    let mut tx = env.tx().await;
    let twice = env.imports.revert(&mut tx, import.id).await;
    assert!(matches!(twice, Err(ImportError::WrongState(_))));
    drop(tx);
    let again = env.import_file(account, &bytes).await;
    assert_eq!(again.inserted, 0, "reverted rows keep their fingerprints");
}

#[tokio::test]
async fn a_file_with_rejected_rows_fails_whole_unless_committed_with_skip_rejected() {
    let env = Env::new().await;
    let Some(bytes) = fixture("bad_unparseable_amount.csv") else {
        return;
    };
    let account = env.account("USD", None).await;
    let failed = env.import_file(account, &bytes).await;
    assert_eq!(failed.status, ImportStatus::Failed);
    assert_eq!(failed.error.as_ref().unwrap().code, "rejected_rows");
    assert!(failed.rejected >= 1);
    let rejected = env.rows(failed.id, Some(RowState::Rejected)).await;
    assert_eq!(rejected[0].field.as_deref(), Some("amount"));
    assert!(
        rejected[0].reason.as_deref().unwrap().contains("12.3.4"),
        "{rejected:?}"
    );
    assert!(
        env.ledger_rows(account).await.is_empty(),
        "nothing half-written"
    );

    let mut tx = env.tx().await;
    env.imports.commit(&mut tx, failed.id, true).await.unwrap();
    tx.commit().await.unwrap();
    env.imports
        .run(&env.kdb, env.tenant, failed.id)
        .await
        .unwrap();
    let mut tx = env.tx().await;
    let done = env.imports.import(&mut tx, failed.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(done.status, ImportStatus::Completed);
    assert_eq!(
        done.rejected, failed.rejected,
        "the rejected rows stay listed"
    );
    assert_eq!(done.inserted, done.rows - done.rejected);
    assert_eq!(env.ledger_rows(account).await.len() as i32, done.inserted);
}

#[tokio::test]
async fn bad_files_end_as_a_clear_failure_and_change_nothing() {
    let env = Env::new().await;
    let account = env.account("USD", None).await;
    for name in [
        "bad_header_only.csv",
        "bad_truncated.ofx",
        "bad_truncated_camt053.xml",
        "bad_binary_junk.csv",
    ] {
        let Some(bytes) = fixture(name) else { return };
        let import = env.import_file(account, &bytes).await;
        assert_eq!(import.status, ImportStatus::Failed, "{name}");
        let error = import.error.expect("a failed import says why");
        assert!(!error.detail.is_empty(), "{name}");
        assert!(
            env.ledger_rows(account).await.is_empty(),
            "{name} changed the ledger"
        );
    }
    // A CAMT statement of another IBAN than the account's.
    let Some(camt) = fixture("camt053_v02_de_vrbank.xml") else {
        return;
    };
    let other = env
        .account("EUR", Some("DE89 3704 0044 0532 0130 00"))
        .await;
    let import = env.import_file(other, &camt).await;
    assert_eq!(import.status, ImportStatus::Failed);
    assert!(import.error.unwrap().detail.contains("IBAN"));
    assert!(env.ledger_rows(other).await.is_empty());
}

#[tokio::test]
async fn uploads_refuse_what_cannot_be_an_import() {
    let env = Env::new().await;
    let account = env.account("EUR", None).await;
    let new = || NewImport {
        account_id: account,
        ..Default::default()
    };
    let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    assert!(
        matches!(env.import(new(), &junk).await, Err(ImportError::Invalid(f)) if f.field == "file")
    );
    assert!(
        matches!(env.import(new(), b"").await, Err(ImportError::Invalid(f)) if f.field == "file")
    );
    let big = vec![b'a'; imports::MAX_FILE_BYTES + 1];
    assert!(matches!(
        env.import(new(), &big).await,
        Err(ImportError::TooLarge)
    ));
    let nowhere = NewImport {
        account_id: Uuid::now_v7(),
        ..Default::default()
    };
    assert!(
        matches!(env.import(nowhere, b"a,b\n").await, Err(ImportError::Invalid(f)) if f.field == "account_id")
    );
    let mut tx = env.tx().await;
    let list = env
        .imports
        .imports(
            &mut tx,
            &kernel::Keyset::parse(
                &kernel::CursorSigner::from_pepper(&[1u8; 32]),
                "t",
                env.tenant,
                Some(50),
                None,
            )
            .unwrap(),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(list.data.is_empty(), "a refused upload leaves no import");
}

#[tokio::test]
async fn an_import_is_audited_once_with_its_counts() {
    let env = Env::new().await;
    let Some(bytes) = fixture("qif_bank_splits_cbb.qif") else {
        return;
    };
    let account = env.account("USD", None).await;
    let import = env.import_file(account, &bytes).await;
    let mut tx = env.tx().await;
    let events: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT type, canonical::jsonb -> 'payload' FROM events WHERE tenant_id = $1 ORDER BY seq",
    )
    .bind(env.tenant.as_uuid())
    .fetch_all(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let completed: Vec<_> = events
        .iter()
        .filter(|(t, _)| t == "import.completed")
        .collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].1["inserted"], import.inserted);
    assert!(completed[0].1["inserted_digest"].as_str().unwrap().len() == 64);
    assert!(
        !events.iter().any(|(t, _)| t == "transaction.created"),
        "no event per row"
    );
}

#[tokio::test]
async fn saved_profiles_and_the_accounts_last_mapping_read_files_without_a_header_match() {
    let env = Env::new().await;
    let account = env.account("EUR", None).await;
    let csv = "Buchung;Wert;Text\n03.02.2026;-12,50;Bäckerei Müller\n04.02.2026;1.200,00;Gehalt\n";
    let mapping: imports::formats::csv::Mapping = serde_json::from_value(serde_json::json!({
        "date": "Buchung",
        "date_format": "%d.%m.%Y",
        "amount": "Wert",
        "description": ["Text"],
        "decimal": "comma",
        "delimiter": ";"
    }))
    .unwrap();
    let mut tx = env.tx().await;
    let profile = env
        .imports
        .create_profile(&mut tx, "Hausbank", mapping)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let import = env
        .import(
            NewImport {
                account_id: account,
                profile_id: Some(profile.id),
                ..Default::default()
            },
            csv.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(import.status, ImportStatus::Completed, "{:?}", import.error);
    let rows = env.ledger_rows(account).await;
    assert_eq!(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        [-1250, 120000]
    );
    // The next file of the account, with no profile named: its last mapping reads it.
    let next = "Buchung;Wert;Text\n05.02.2026;-3,20;Kiosk\n";
    let import = env.import_file(account, next.as_bytes()).await;
    assert_eq!(import.status, ImportStatus::Completed, "{:?}", import.error);
    assert_eq!(import.inserted, 1);
    let mut tx = env.tx().await;
    let taken = env
        .imports
        .create_profile(
            &mut tx,
            "hausbank",
            serde_json::from_value(serde_json::json!({"date": "A", "amount": "B"})).unwrap(),
        )
        .await;
    assert!(matches!(taken, Err(ImportError::ProfileNameTaken)));
}

/// The UBS statement books one EUR entry on its CHF account: that row is rejected (an
/// account's rows are in its currency), so the file fails whole until a person commits it
/// with `skip_rejected`, and the CHF rows arrive.
#[tokio::test]
async fn a_row_in_another_currency_is_rejected_and_the_rest_can_be_committed() {
    let env = Env::new().await;
    let Some(bytes) = fixture("camt053_v08_ch_ubs.xml") else {
        return;
    };
    let account = env.account("CHF", None).await;
    let failed = env.import_file(account, &bytes).await;
    assert_eq!(failed.status, ImportStatus::Failed);
    let rejected = env.rows(failed.id, Some(RowState::Rejected)).await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].field.as_deref(), Some("currency"));
    assert!(rejected[0].reason.as_deref().unwrap().contains("EUR"));
    assert!(env.ledger_rows(account).await.is_empty());
    let mut tx = env.tx().await;
    env.imports.commit(&mut tx, failed.id, true).await.unwrap();
    tx.commit().await.unwrap();
    env.imports
        .run(&env.kdb, env.tenant, failed.id)
        .await
        .unwrap();
    let rows = env.ledger_rows(account).await;
    assert_eq!(rows.len() as i32, failed.rows - 1);
    assert!(
        failed.warnings.iter().any(|w| w.message.contains("IBAN")),
        "the statement's IBAN could not be checked: {:?}",
        failed.warnings
    );
}

/// A NUL or a line break inside a field (PostgreSQL's text refuses a NUL) is stored as a
/// space: the import completes instead of failing in its job.
#[tokio::test]
async fn control_characters_in_a_field_do_not_break_an_import() {
    let env = Env::new().await;
    let account = env.account("USD", None).await;
    let qif = b"!Type:Bank\nD03/02/2026\nT-3.50\nPCafe\0 Bar\nMlunch\twith team\n^\n";
    let import = env.import_file(account, qif).await;
    assert_eq!(import.status, ImportStatus::Completed, "{:?}", import.error);
    let rows = env.ledger_rows(account).await;
    assert_eq!(rows[0].2.as_deref(), Some("Cafe Bar"));
    assert_eq!(rows[0].3, "lunch with team");
}
