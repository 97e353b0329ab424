//! Random and mutated bytes thrown at every decoder that takes bytes from
//! outside (see `orchestrix_chaos::decoders`; the `cargo fuzz` targets in
//! `fuzz/` call the same functions). A panic fails the test and prints the
//! input, to become a regression case below.

use orchestrix_chaos::decoders;
use orchestrix_chaos::scale;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// Valid-looking inputs to mutate, so that the decoders get past their
/// first checks.
fn seeds() -> Vec<Vec<u8>> {
    let json = serde_json::json!({
        "specversion": "1.0", "id": "0190c2b6-0000-7000-8000-000000000001",
        "source": "/orders", "type": "com.acme.Placed", "subject": "order-1",
        "time": "2026-01-01T00:00:00Z", "datacontenttype": "application/json",
        "dataschema": "urn:orchestrix:schema:com.acme.Placed:1",
        "streamrevision": 0, "globalposition": 1, "schemaversion": 1,
        "data": {"total": 3}
    });
    let mut binary = Vec::new();
    for (k, v) in [
        ("ce_specversion", "1.0"),
        ("ce_id", "1"),
        ("ce_source", "/s"),
        ("ce_type", "com.acme.T"),
        ("ce_subject", "order-1"),
        ("ce_globalposition", "7"),
        ("ce_streamrevision", "0"),
        ("content-type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "/s"),
        ("ce-type", "com.acme.T"),
        ("orchestrix-reason", "boom"),
        ("Nats-Msg-Id", "x"),
    ] {
        binary.extend_from_slice(k.as_bytes());
        binary.push(0xFF);
        binary.extend_from_slice(v.as_bytes());
        binary.push(0xFF);
    }
    binary.extend_from_slice(br#"{"a":1}"#);
    vec![
        serde_json::to_vec(&json).unwrap_or_default(),
        binary,
        vec![0, 0, 0, 0, 7, 2, 4, 6],
        b"127.0.0.1:9092?prefix=p&partitions=4&session.timeout.ms=6000".to_vec(),
        b"h:4222?stream=S&prefix=p.q&partitions=4&group=g".to_vec(),
    ]
}

fn mutate(rng: &mut StdRng, input: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..8) {
        let len = input.len();
        match rng.random_range(0..6) {
            0 if len > 0 => input[rng.random_range(0..len)] = rng.random(),
            1 => input.insert(rng.random_range(0..=len), rng.random()),
            2 if len > 0 => {
                input.remove(rng.random_range(0..len));
            }
            3 if len > 0 => input.truncate(rng.random_range(0..len)),
            // Multi-byte UTF-8 in the middle of a name or value.
            4 => {
                let at = rng.random_range(0..=len);
                let c = ['é', 'Ł', '€', '𝄞', 'ı'][rng.random_range(0..5)];
                let mut buf = [0; 4];
                for (i, b) in c.encode_utf8(&mut buf).bytes().enumerate() {
                    input.insert(at + i, b);
                }
            }
            _ => input.push(0xFF),
        }
    }
}

fn hammer(name: &str, target: fn(&[u8])) {
    let rounds = scale(20_000, 500_000);
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(0x000C_4A05 ^ name.len() as u64);
    for round in 0..rounds {
        let mut input = if round % 4 == 0 {
            (0..rng.random_range(0..256))
                .map(|_| rng.random())
                .collect()
        } else {
            seeds[rng.random_range(0..seeds.len())].clone()
        };
        mutate(&mut rng, &mut input);
        let outcome = std::panic::catch_unwind(|| target(&input));
        assert!(outcome.is_ok(), "{name} panicked on input {input:?}");
    }
}

#[test]
fn cloudevent_json_decoder_survives_random_bytes() {
    hammer("cloudevent_json", decoders::cloudevent_json);
}

#[test]
fn cloudevent_binary_decoder_survives_random_bytes() {
    hammer("cloudevent_binary", decoders::cloudevent_binary);
}

#[test]
fn avro_wire_format_parser_survives_random_bytes() {
    hammer("avro_wire", decoders::avro_wire);
}

#[test]
fn avro_decoder_survives_random_bytes() {
    hammer("avro_decode", decoders::avro_decode);
}

#[test]
fn url_parsers_survive_random_bytes() {
    hammer("urls", decoders::urls);
}

#[test]
fn kafka_and_nats_header_mapping_survives_random_bytes() {
    hammer("headers", decoders::headers);
}

/// Found by the random-bytes test: a NATS header name with a multi-byte
/// character across byte 5 (or 11) made the dead-letter reader slice a
/// `str` inside a character and panic.
#[test]
fn nats_dead_letter_reader_takes_non_ascii_header_names() {
    for name in ["abcdŁ", "abcdŁx", "orchestrixŁ", "orchestrix-Ł", "natsŁ-x"] {
        let mut input = name.as_bytes().to_vec();
        input.push(0xFF);
        input.extend_from_slice(b"v");
        input.push(0xFF);
        decoders::headers(&input);
    }
}
