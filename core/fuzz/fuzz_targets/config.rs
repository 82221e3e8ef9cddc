//! The config file (TOML): a layer that parses stacks and settles without panicking; a
//! refused file names a line and column inside the text.
#![no_main]

use std::path::Path;

use harddrive_party_core::config::{parse, ConfigError, Defaults, Layer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(Path::new("fuzz.toml"), text) {
        Ok(layer) => {
            assert_eq!(layer.clone().over(Layer::default()), layer);
            assert_eq!(Layer::default().over(layer.clone()), layer);
            let settings = layer.settle(Defaults {
                storage: "/var/lib/hdp".into(),
                home_downloads: None,
            });
            assert!((1..=16).contains(&settings.threads));
        }
        Err(ConfigError::Invalid { line, column, .. }) => {
            assert!(line >= 1 && line <= text.lines().count().max(1) + 1);
            assert!(column >= 1);
        }
        Err(other) => panic!("parsing reads no file: {other}"),
    }
});
