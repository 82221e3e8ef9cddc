//! Settings: the pure layers of `harddrive_party_core::config` (re-exported here) and the
//! one piece of I/O, reading the config file.

use std::path::Path;

pub use harddrive_party_core::config::*;

/// Reads and parses a config file; errors name the file (and line and column).
pub fn load(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}
