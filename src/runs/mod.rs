//! A run, in one place: what one `/schedule` run found and did ([`ledger`]: the run ledger, the
//! plan, the reads of runs back from the store), the run itself ([`schedule`]) and the scope a
//! scheduler job may narrow it to ([`scope`]), what became of it
//! ([`summary`]: the run report) and its end ([`completion`]: the one summary notification per run).
//!
//! The children import each other by path (`crate::runs::ledger::RunLedger`); this file names none
//! of them in code.

pub mod completion;
pub mod ledger;
pub mod schedule;
pub mod scope;
pub mod summary;
