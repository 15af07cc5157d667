//! The Balance binary's behaviour over real HTTP, against a real PostgreSQL.

mod cli;
mod helpers;
mod ops;
mod problems;
mod spec;
mod test_api;
