//! Imports (DESIGN.md §6, INTEGRATIONS.md §1): a bank file is uploaded into a tenant-owned
//! store, decoded (BOM, strict UTF-8, the declared charset, a guess), parsed (CSV with
//! mappings and presets, OFX/QFX, CAMT.053, MT940, QIF), validated into a staging table
//! committed in batches, and promoted into the ledger in one transaction, every row
//! deduplicated by the ledger's one fingerprint (docs/DEDUP.md). A preview writes no
//! transaction; a revert takes back the rows nobody edited since.

mod domain;
mod error;
pub mod formats;
mod http;
mod jobs;
pub mod pipeline;
mod service;
mod store;

pub use domain::{
    DuplicateRule, FileFormat, Import, ImportFailure, ImportRow, ImportStatus, ImportWarning,
    NewImport, Profile, Reversal, RowState,
};
pub use error::ImportError;
pub use http::{ImportsApi, PERMISSIONS};
pub use jobs::register;
pub use service::{Created, Imports, MAX_FILE_BYTES, RUN_JOB, Upload};
