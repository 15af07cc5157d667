use std::sync::Arc;

use audit::{AuditLog, Keys, NewEvent, Record};
use kernel::{Actor, Db, TenantId, TenantTx};
use testkit::db::TestDb;

pub struct Env {
    pub db: TestDb,
    pub kdb: Db,
    pub log: AuditLog,
}

pub fn keys() -> Keys {
    Keys::from_seeds([("test-1", &[11u8; 32][..]), ("old", &[12u8; 32][..])]).unwrap()
}

impl Env {
    pub async fn new() -> Env {
        let db = TestDb::with_migrations().await.unwrap();
        let log = AuditLog::new(keys());
        let hook: Arc<dyn kernel::CommitHook> = Arc::new(log.clone());
        let kdb = db.kernel_db([hook]).await.unwrap();
        Env { db, kdb, log }
    }

    pub async fn tenant(&self) -> TenantId {
        testkit::seed::tenant(&self.kdb, "T").await
    }

    /// `commits` transactions of `per_commit` events each.
    pub async fn record(&self, tenant: TenantId, commits: usize, per_commit: usize) {
        for _ in 0..commits {
            let mut tx = TenantTx::begin(&self.kdb, tenant, Actor::System)
                .await
                .unwrap();
            for i in 0..per_commit {
                tx.record(
                    NewEvent::new("test.thing.happened")
                        .resource("thing", i)
                        .payload(serde_json::json!({"i": i})),
                );
            }
            tx.commit().await.unwrap();
        }
    }

    pub async fn verify(&self, tenant: TenantId) -> audit::Verification {
        let mut tx = TenantTx::begin(&self.kdb, tenant, Actor::System)
            .await
            .unwrap();
        audit::verify(&mut tx, self.log.keys().public_keys())
            .await
            .unwrap()
    }

    pub async fn list_all(&self, tenant: TenantId) -> Vec<audit::EventView> {
        let mut tx = TenantTx::begin(&self.kdb, tenant, Actor::System)
            .await
            .unwrap();
        let params = kernel::PageParams {
            limit: 200,
            after: None,
        };
        audit::list(&mut tx, &audit::EventFilter::default(), &params)
            .await
            .unwrap()
    }

    pub async fn export(&self, tenant: TenantId) -> String {
        use futures_util::StreamExt;
        let tx = TenantTx::begin(&self.kdb, tenant, Actor::System)
            .await
            .unwrap();
        let mut out = String::new();
        let mut stream = std::pin::pin!(audit::export(tx));
        while let Some(chunk) = stream.next().await {
            out.push_str(&chunk.unwrap());
        }
        out
    }
}
