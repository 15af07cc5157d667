//! The job runner against a real database, and real worker processes for crash safety.

mod crash;
mod helpers;
mod runs;
