//! The policy sections this part adds parse from TOML as documented, with their defaults.

use sendguard::apology::ApologyPolicy;
use sendguard::ledger::LedgerConfig;
use sendguard::monitor::MonitorPolicy;
use sendguard::quarantine::QuarantinePolicy;
use serde::Deserialize;
use std::time::Duration;

/// The fields as they are added to the policy file schema.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    #[serde(default)]
    apology: Vec<ApologyPolicy>,
    #[serde(default)]
    monitor: MonitorPolicy,
    #[serde(default)]
    quarantine: QuarantinePolicy,
    #[serde(default)]
    ledger: LedgerConfig,
}

#[test]
fn documented_sections_parse() {
    let s: Sections = toml::from_str(
        r#"
[[apology]]
campaign = "sorry-2026-11"
incident = "INC-20261128-1"

[monitor]
rejection_rate = 0.05
min_recipients = 200
complaint_rate = 0.001
deferral_rate = 0.3
window = "1h"

[quarantine]
max_bytes = 536870912

[ledger]
retention = "90d"
queue_capacity = 8192
"#,
    )
    .unwrap();
    assert_eq!(s.apology.len(), 1);
    assert_eq!(s.apology[0].incident, "INC-20261128-1");
    assert_eq!(s.monitor.window, Duration::from_secs(3600));
    assert_eq!(s.monitor.bucket, Duration::from_secs(60));
    assert!(s.monitor.enabled);
    assert_eq!(s.quarantine.max_bytes, 512 << 20);
    assert_eq!(s.quarantine.max_messages, 100_000);
    assert_eq!(s.ledger.retention, Duration::from_secs(90 * 86_400));
    assert_eq!(s.ledger.batch_size, 2000);
    assert!(s.ledger.test_delay_per_batch.is_none());

    let empty: Sections = toml::from_str("").unwrap();
    assert!(empty.apology.is_empty());
    assert_eq!(empty.monitor, MonitorPolicy::default());

    for bad in [
        "[monitor]\nrejection_rte = 0.1\n",
        "[[apology]]\ncampaign = \"x\"\n",
        "[ledger]\nretention = \"forever\"\n",
    ] {
        assert!(toml::from_str::<Sections>(bad).is_err(), "{bad}");
    }
}
