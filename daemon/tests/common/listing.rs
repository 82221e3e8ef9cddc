//! What a daemon sees of a peer's shares, asked through its CLI.

use super::Daemon;

impl Daemon {
    /// The paths at the top of `peer`'s listing (`NAME/Share`) as this daemon sees them.
    pub fn top_level(&self, peer: &str) -> Vec<String> {
        let listing = self.cli_json(&["ls", peer, "--recursive", "false", "--json"]);
        listing
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_string())
            .collect()
    }
}
