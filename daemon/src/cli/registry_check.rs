//! The settings registry (`core/src/config/registry.rs`) against everything that names a
//! setting outside the Rust types: clap's flags and variables, the API's change request,
//! the OpenWrt init script and UCI file, and debian's sample config.

use std::path::Path;

use clap::CommandFactory;

use super::{setting, Cli};
use crate::node::SettingsChange;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn every_start_flag_is_a_registered_setting_and_back() {
    let command = Cli::command();
    let start = command.find_subcommand("start").expect("a start command");
    let args = command.get_arguments().chain(start.get_arguments());
    let mut registered = 0;
    for arg in args {
        let Some(flag) = arg.get_long() else { continue };
        if ["config", "verbose"].contains(&flag) {
            continue; // how to run, not what to run with
        }
        let s = setting::ALL
            .iter()
            .find(|s| s.flag == flag)
            .unwrap_or_else(|| panic!("--{flag} is not in the settings registry"));
        let env = arg.get_env().and_then(|e| e.to_str());
        assert_eq!(env, Some(s.env), "--{flag}");
        registered += 1;
    }
    assert_eq!(
        registered,
        setting::ALL.len(),
        "a registered setting has no flag"
    );
}

#[test]
fn api_fields_exist_in_the_change_request() {
    let fields = setting::struct_fields::<SettingsChange>();
    assert!(fields.len() > 5, "{fields:?}");
    for s in setting::ALL {
        if let Some(api) = s.api {
            assert!(
                fields.contains(&api),
                "{}: no field {api} in POST /api/settings",
                s.key
            );
        }
    }
}

#[test]
fn openwrt_offers_every_uci_option_and_renders_it() {
    let init = repo_file("openwrt/harddrive-party/files/harddrive-party.init");
    let uci = repo_file("openwrt/harddrive-party/files/harddrive-party.config");
    let words: Vec<&str> = init
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    for s in setting::ALL {
        let Some(option) = s.uci else { continue };
        assert!(
            words.contains(&option),
            "the init script never reads {option}"
        );
        assert!(
            uci.contains(&format!("option {option} '"))
                || uci.contains(&format!("list {option} '")),
            "/etc/config/harddrive-party does not show {option}"
        );
    }
}

#[test]
fn debian_sample_config_shows_every_key() {
    let sample = repo_file("debian/config.toml");
    for s in setting::ALL {
        assert!(
            sample.lines().any(|l| l
                .trim_start_matches("# ")
                .starts_with(&format!("{} = ", s.key))),
            "debian/config.toml does not mention {}",
            s.key
        );
    }
}
