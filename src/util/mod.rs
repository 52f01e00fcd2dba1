//! Small helpers every layer may use: nothing here knows the domain.

pub mod glob;
