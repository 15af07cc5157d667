//! What other modules add to a new tenant in its creating transaction (the ledger's default
//! categories, say), without the tenancy module depending on them: each registers a
//! [`TenantSetup`], and creating a tenant runs them all before it commits.

use futures_util::future::BoxFuture;

use crate::{TenantTx, problem::Problem};

/// A module's part of a new tenant, written in the tenant's creating transaction.
pub trait TenantSetup: Send + Sync {
    fn set_up<'a>(&'a self, tx: &'a mut TenantTx) -> BoxFuture<'a, Result<(), Problem>>;
}
