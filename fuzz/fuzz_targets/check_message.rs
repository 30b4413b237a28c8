//! Arbitrary bytes as a message through the placeholder detector with the default policy.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sendguard::model::Message;
use sendguard::policy::placeholder::{Detector, PlaceholderPolicy};
use std::sync::OnceLock;

static DETECTOR: OnceLock<Option<Detector>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let detector = DETECTOR.get_or_init(|| Detector::new(&PlaceholderPolicy::default()).ok());
    if let Some(d) = detector {
        let _ = d.scan(&Message::new(data.to_vec()));
        if let Ok(s) = std::str::from_utf8(data) {
            let _ = d.scan_html(s);
        }
    }
});
