//! What an import is, as the service and the API speak of it.

use chrono::{DateTime, NaiveDate, Utc};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::formats::{Format, csv::Mapping};

/// Where an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// Waiting for the worker.
    Queued,
    /// Being read, staged or promoted.
    Running,
    /// Read without writing a transaction (`preview=true`): commit it or drop it.
    Previewed,
    Completed,
    /// Nothing was written; `error` says why.
    Failed,
    /// Its unedited rows were taken back.
    Reverted,
}

impl ImportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportStatus::Queued => "queued",
            ImportStatus::Running => "running",
            ImportStatus::Previewed => "previewed",
            ImportStatus::Completed => "completed",
            ImportStatus::Failed => "failed",
            ImportStatus::Reverted => "reverted",
        }
    }

    pub fn from_db(s: &str) -> ImportStatus {
        match s {
            "running" => ImportStatus::Running,
            "previewed" => ImportStatus::Previewed,
            "completed" => ImportStatus::Completed,
            "failed" => ImportStatus::Failed,
            "reverted" => ImportStatus::Reverted,
            _ => ImportStatus::Queued,
        }
    }
}

/// The file format, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    /// OFX 1.x (SGML), OFX 2.x (XML) and QFX.
    Ofx,
    Camt053,
    Mt940,
    Qif,
}

impl From<FileFormat> for Format {
    fn from(f: FileFormat) -> Format {
        match f {
            FileFormat::Csv => Format::Csv,
            FileFormat::Ofx => Format::Ofx,
            FileFormat::Camt053 => Format::Camt053,
            FileFormat::Mt940 => Format::Mt940,
            FileFormat::Qif => Format::Qif,
        }
    }
}

impl From<Format> for FileFormat {
    fn from(f: Format) -> FileFormat {
        match f {
            Format::Csv => FileFormat::Csv,
            Format::Ofx => FileFormat::Ofx,
            Format::Camt053 => FileFormat::Camt053,
            Format::Mt940 => FileFormat::Mt940,
            Format::Qif => FileFormat::Qif,
        }
    }
}

pub fn format_str(f: Format) -> &'static str {
    match f {
        Format::Csv => "csv",
        Format::Ofx => "ofx",
        Format::Camt053 => "camt053",
        Format::Mt940 => "mt940",
        Format::Qif => "qif",
    }
}

pub fn format_from_db(s: &str) -> Option<Format> {
    Some(match s {
        "csv" => Format::Csv,
        "ofx" => Format::Ofx,
        "camt053" => Format::Camt053,
        "mt940" => Format::Mt940,
        "qif" => Format::Qif,
        _ => return None,
    })
}

/// An upload, before its bytes.
#[derive(Debug, Clone, Default)]
pub struct NewImport {
    pub account_id: Uuid,
    /// Detected from the content when absent.
    pub format: Option<Format>,
    /// For CSV; else the profile's, else the account's last, else a preset from the header.
    pub mapping: Option<Mapping>,
    pub profile_id: Option<Uuid>,
    /// Read and report, write no transaction.
    pub preview: bool,
    /// Import the readable rows of a file with rejected ones (else it fails whole).
    pub skip_rejected: bool,
    pub file_name: Option<String>,
}

/// A note on an import.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct ImportWarning {
    /// The row it is about, if one.
    pub row: Option<u32>,
    pub message: String,
}

/// Why an import failed.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct ImportFailure {
    /// `unreadable_file`, `rejected_rows`, `account_mismatch`, `account_archived`…
    pub code: String,
    pub detail: String,
}

/// An import.
#[derive(Debug, Clone, Object)]
pub struct Import {
    pub id: Uuid,
    pub account_id: Uuid,
    pub format: Option<FileFormat>,
    pub status: ImportStatus,
    pub preview: bool,
    pub skip_rejected: bool,
    /// The CSV preset recognised from the header, if one was used.
    pub preset: Option<String>,
    pub profile_id: Option<Uuid>,
    pub file_name: Option<String>,
    pub file_size: i64,
    /// The encoding the file was read in.
    pub encoding: Option<String>,
    /// 0–1.
    pub progress: f32,
    /// Rows the file holds.
    pub rows: i32,
    pub inserted: i32,
    pub duplicates: i32,
    pub rejected: i32,
    pub warnings: Vec<ImportWarning>,
    pub error: Option<ImportFailure>,
    pub job_id: Option<Uuid>,
    /// The user who uploaded it (absent for an API key or the system).
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub reverted_at: Option<DateTime<Utc>>,
}

/// What a row of the file became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum RowState {
    /// Read and valid; not written (yet): a preview's would-be insert.
    Staged,
    Rejected,
    Inserted,
    Duplicate,
}

impl RowState {
    pub fn as_str(self) -> &'static str {
        match self {
            RowState::Staged => "staged",
            RowState::Rejected => "rejected",
            RowState::Inserted => "inserted",
            RowState::Duplicate => "duplicate",
        }
    }

    pub fn from_db(s: &str) -> RowState {
        match s {
            "rejected" => RowState::Rejected,
            "inserted" => RowState::Inserted,
            "duplicate" => RowState::Duplicate,
            _ => RowState::Staged,
        }
    }
}

/// The dedup rule that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum DuplicateRule {
    /// The same provider id (OFX `FITID`, CAMT reference…) in the account.
    ProviderId,
    /// The same fingerprint (docs/DEDUP.md).
    Fingerprint,
}

/// One row of the file.
#[derive(Debug, Clone, Object)]
pub struct ImportRow {
    /// Its line (CSV, MT940, QIF) or entry number (OFX, CAMT) in the file.
    pub row: i32,
    pub state: RowState,
    pub date: Option<NaiveDate>,
    pub value_date: Option<NaiveDate>,
    /// Minor units.
    pub amount: Option<i64>,
    pub merchant: Option<String>,
    pub description: Option<String>,
    pub external_id: Option<String>,
    /// The category the file proposed.
    pub category_hint: Option<String>,
    /// Inserted: the new transaction; duplicate: the one it duplicates (for a duplicate
    /// of an earlier row of the same file in a preview: absent).
    pub transaction_id: Option<Uuid>,
    pub matched_by: Option<DuplicateRule>,
    /// Rejected: the field at fault.
    pub field: Option<String>,
    /// Rejected: why.
    pub reason: Option<String>,
}

/// What a revert did.
#[derive(Debug, Clone, Object)]
pub struct Reversal {
    pub import_id: Uuid,
    /// Rows soft-deleted.
    pub deleted: usize,
    /// Rows kept because a person edited them since (or linked them into a transfer).
    pub kept: Vec<Uuid>,
}

/// A saved CSV mapping.
#[derive(Debug, Clone)]
pub struct Profile {
    pub id: Uuid,
    pub name: String,
    pub mapping: Mapping,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
