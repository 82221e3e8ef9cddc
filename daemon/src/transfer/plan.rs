//! Download path policy and retry arithmetic: the pure core's `plan` module.

pub use harddrive_party_core::plan::*;
