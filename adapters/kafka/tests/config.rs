//! The example config file parses, validates, and round-trips; unknown keys
//! are refused with the offending key named.

use orchestrix_kafka::KafkaConfig;
use orchestrix_kafka::config::{Compression, RetryConfig};

const EXAMPLE: &str = include_str!("../kafka.example.toml");

#[test]
fn example_config_round_trips() {
    let config: KafkaConfig = toml::from_str(EXAMPLE).expect("the example parses");
    config.validate().expect("the example is valid");
    assert_eq!(config.producer.compression, Compression::Lz4);
    assert_eq!(
        config.consumer.retry,
        RetryConfig::Exponential {
            max_attempts: 5,
            initial_ms: 100,
            max_ms: 5_000
        }
    );
    assert_eq!(
        config.topics.topic_for_category("audit"),
        "compliance.audit-log"
    );
    assert_eq!(config.librdkafka["socket.keepalive.enable"], "true");

    let text = toml::to_string(&config).unwrap();
    let back: KafkaConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, config);

    // Apart from the marked additions, the example shows the defaults.
    let mut defaults = config.clone();
    defaults.topics.overrides.clear();
    defaults.topics.settings.clear();
    defaults.librdkafka.clear();
    assert_eq!(defaults, KafkaConfig::default());
}

#[test]
fn unknown_keys_are_refused() {
    for (text, key) in [
        ("brokerz = [\"a:1\"]", "brokerz"),
        ("[consumer]\ngroup = \"g\"", "group"),
        (
            "[consumer.retry]\npolicy = \"fixed\"\nmax_attempts = 2\ndelay_ms = 1\nextra = 1",
            "extra",
        ),
        ("[producer]\ncompression = \"brotli\"", "brotli"),
    ] {
        let err = toml::from_str::<KafkaConfig>(text).unwrap_err().to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
    let minimal: KafkaConfig = toml::from_str("[consumer]\ngroup_id = \"g\"").unwrap();
    assert_eq!(minimal.consumer.group_id.as_deref(), Some("g"));
}
