//! Transactions through the service, the way an import, a sync or a rule changes them.

use chrono::NaiveDate;
use kernel::{Actor, Currency, DisplayName, TenantTx};
use ledger::{
    AccountKind, Editor, Ledger, NewAccount, NewTransaction, SearchPlan, TransactionChanges,
    TransactionSource, TransactionStatus,
};
use testkit::seed;

use crate::accounts::Env;

fn new_transaction(account: uuid::Uuid, merchant: &str) -> NewTransaction {
    NewTransaction {
        account_id: account,
        date: NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
        value_date: None,
        amount: -4_200,
        currency: None,
        merchant: Some(merchant.into()),
        description: "CARD PAYMENT".into(),
        status: TransactionStatus::Posted,
        category_id: None,
        splits: Vec::new(),
        notes: None,
        tags: Vec::new(),
        external_id: None,
    }
}

#[tokio::test]
async fn imports_syncs_and_rules_never_overwrite_what_a_person_edited() {
    let env = Env::new().await;
    let tenant = seed::tenant(&env.kdb, "Acme").await;
    let ledger = Ledger::new();
    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    let account = ledger
        .create_account(
            &mut tx,
            NewAccount {
                name: DisplayName::parse("name", "Operating").unwrap(),
                kind: AccountKind::Checking,
                currency: Currency::parse("EUR").unwrap(),
                opening_balance: 0,
                opening_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                iban: None,
                institution: None,
            },
        )
        .await
        .unwrap();
    let t = ledger
        .create_transaction(
            &mut tx,
            new_transaction(account.id, "AMZN MKTP"),
            TransactionSource::Import,
        )
        .await
        .unwrap();
    // A person fixes the merchant and the tags.
    let edited = ledger
        .update_transaction(
            &mut tx,
            t.id,
            None,
            TransactionChanges {
                merchant: Some(Some("Amazon".into())),
                tags: Some(vec!["office".into()]),
                ..TransactionChanges::default()
            },
            Editor::Person,
        )
        .await
        .unwrap();
    assert_eq!(edited.locked_fields, ["merchant", "tags"]);
    // Each lockable field, offered by an automation: the locked ones stay, the rest apply.
    let offered = [
        (
            "merchant",
            TransactionChanges {
                merchant: Some(Some("AMZN".into())),
                ..TransactionChanges::default()
            },
        ),
        (
            "tags",
            TransactionChanges {
                tags: Some(vec!["imported".into()]),
                ..TransactionChanges::default()
            },
        ),
        (
            "notes",
            TransactionChanges {
                notes: Some(Some("from the bank".into())),
                ..TransactionChanges::default()
            },
        ),
        (
            "date",
            TransactionChanges {
                date: NaiveDate::from_ymd_opt(2026, 2, 2),
                ..TransactionChanges::default()
            },
        ),
    ];
    for (field, changes) in offered {
        let after = ledger
            .update_transaction(&mut tx, t.id, None, changes, Editor::Automation)
            .await
            .unwrap();
        match field {
            "merchant" => assert_eq!(after.merchant.as_deref(), Some("Amazon")),
            "tags" => assert_eq!(after.tags, ["office"]),
            "notes" => assert_eq!(after.notes.as_deref(), Some("from the bank")),
            "date" => assert_eq!(after.date, NaiveDate::from_ymd_opt(2026, 2, 2).unwrap()),
            _ => unreachable!(),
        }
        assert_eq!(
            after.locked_fields,
            ["merchant", "tags"],
            "an automation locks nothing"
        );
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn search_answers_the_same_from_the_term_index_and_from_the_date_walk() {
    let env = Env::new().await;
    let tenant = seed::tenant(&env.kdb, "Acme").await;
    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    let ledger = Ledger::new();
    let account = ledger
        .create_account(
            &mut tx,
            NewAccount {
                name: DisplayName::parse("name", "Operating").unwrap(),
                kind: AccountKind::Checking,
                currency: Currency::parse("EUR").unwrap(),
                opening_balance: 0,
                opening_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                iban: None,
                institution: None,
            },
        )
        .await
        .unwrap();
    for (i, merchant) in [
        "Café Müller",
        "Amazon Web Services",
        "Amazon Marketplace",
        "Zalando",
    ]
    .iter()
    .enumerate()
    {
        let mut new = new_transaction(account.id, merchant);
        new.date = NaiveDate::from_ymd_opt(2026, 2, 1 + i as u32).unwrap();
        ledger
            .create_transaction(&mut tx, new, TransactionSource::Manual)
            .await
            .unwrap();
    }
    let cursors = kernel::CursorSigner::from_pepper(&[7u8; 32]);
    for q in ["amazon", "am se", "cafe", "card", "zz", "ama market"] {
        let mut answers = Vec::new();
        for plan in [
            Ledger::with_search_plan(SearchPlan::Auto),
            Ledger::with_search_plan(SearchPlan::TermIndex),
            Ledger::with_search_plan(SearchPlan::DateWalk),
        ] {
            let filter = ledger::TransactionFilter {
                include_transfers: true,
                q: Some(q.into()),
                ..Default::default()
            };
            let page = kernel::Keyset::parse(&cursors, "t", tenant, Some(2), None).unwrap();
            let first = plan.transactions(&mut tx, &filter, &page).await.unwrap();
            let ids: Vec<_> = first.data.iter().map(|t| t.id).collect();
            answers.push((ids, first.has_more));
        }
        assert_eq!(answers[0], answers[1], "{q}");
        assert_eq!(answers[0], answers[2], "{q}");
    }
    tx.commit().await.unwrap();
}

/// Rows a search finds only past many candidates (a common word, a filter that few of its
/// rows pass) come back the same from every plan; the term index reads them in rounds.
#[tokio::test]
async fn search_reads_past_candidates_the_filters_refuse() {
    let env = Env::new().await;
    let tenant = seed::tenant(&env.kdb, "Acme").await;
    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    let ledger = Ledger::new();
    let open = |name: &str| NewAccount {
        name: DisplayName::parse("name", name).unwrap(),
        kind: AccountKind::Checking,
        currency: Currency::parse("EUR").unwrap(),
        opening_balance: 0,
        opening_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        iban: None,
        institution: None,
    };
    let busy = ledger.create_account(&mut tx, open("Busy")).await.unwrap();
    let quiet = ledger.create_account(&mut tx, open("Quiet")).await.unwrap();
    let eur = Currency::parse("EUR").unwrap();
    let rows = |account: uuid::Uuid, n: usize, first: NaiveDate| {
        let mut ordinals = ledger::Ordinals::default();
        (0..n)
            .map(|i| {
                let date = first + chrono::Days::new(i as u64 / 10);
                let amount = -(i as i64) - 1;
                ledger::Incoming {
                    date,
                    value_date: None,
                    amount,
                    merchant: Some("Coffee Bar".into()),
                    description: "CARD PAYMENT".into(),
                    status: TransactionStatus::Posted,
                    external_id: None,
                    fingerprint: ordinals.next(
                        account,
                        date,
                        amount,
                        eur,
                        "Coffee Bar CARD PAYMENT",
                    ),
                }
            })
            .collect::<Vec<_>>()
    };
    let older = NaiveDate::from_ymd_opt(2025, 2, 1).unwrap();
    let newer = NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
    ledger
        .ingest(
            &mut tx,
            quiet.id,
            TransactionSource::Import,
            None,
            &rows(quiet.id, 3, older),
        )
        .await
        .unwrap();
    ledger
        .ingest(
            &mut tx,
            busy.id,
            TransactionSource::Import,
            None,
            &rows(busy.id, 700, newer),
        )
        .await
        .unwrap();
    let cursors = kernel::CursorSigner::from_pepper(&[7u8; 32]);
    let mut answers = Vec::new();
    for plan in [
        SearchPlan::Auto,
        SearchPlan::TermIndex,
        SearchPlan::DateWalk,
    ] {
        let filter = ledger::TransactionFilter {
            include_transfers: true,
            account_id: Some(quiet.id),
            q: Some("card".into()),
            ..Default::default()
        };
        let page = kernel::Keyset::parse(&cursors, "t", tenant, Some(2), None).unwrap();
        let first = Ledger::with_search_plan(plan)
            .transactions(&mut tx, &filter, &page)
            .await
            .unwrap();
        assert!(first.data.iter().all(|t| t.account_id == quiet.id));
        let next =
            kernel::Keyset::parse(&cursors, "t", tenant, Some(2), first.next_cursor.as_deref())
                .unwrap();
        let second = Ledger::with_search_plan(plan)
            .transactions(&mut tx, &filter, &next)
            .await
            .unwrap();
        let ids: Vec<_> = first
            .data
            .iter()
            .chain(&second.data)
            .map(|t| t.id)
            .collect();
        assert_eq!(ids.len(), 3, "{plan:?}");
        answers.push(ids);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    let busy_now = ledger.account(&mut tx, busy.id).await.unwrap();
    assert_eq!(
        busy_now.balance,
        -(1..=700).sum::<i64>(),
        "ingest moves the balance"
    );
    tx.commit().await.unwrap();
}
