//! The ledger through its service, without HTTP: the path an import, a sync job or the bot
//! takes.

mod accounts;
mod transactions;
