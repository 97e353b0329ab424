//! Avro encode/decode of a typical event against JSON (serde_json), in one run.
//!
//! `cargo bench -p orchestrix-avro --bench avro` prints a table; well under a
//! minute. Each figure is the median of 15 batches of ~60 ms,
//! Avro and JSON batches interleaved so that load from other processes hits
//! both alike.

use std::hint::black_box;
use std::time::{Duration, Instant};

use orchestrix::codec::Codec;
use orchestrix_avro::{AvroCodec, AvroSchemas, JsonMapping, TimeAs};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const T: &str = "com.acme.shop.OrderPlaced";

const V1: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"com.acme.shop","fields":[
  {"name":"order_id","type":{"type":"string","logicalType":"uuid"}},
  {"name":"customer_id","type":"string"},
  {"name":"total_cents","type":"long"},
  {"name":"currency","type":"string"},
  {"name":"items","type":"int"},
  {"name":"express","type":"boolean"},
  {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID","SHIPPED"]}},
  {"name":"coupon","type":["null","string"],"default":null},
  {"name":"tags","type":{"type":"array","items":"string"}},
  {"name":"placed_at","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"weight_kg","type":"double"}
]}"#;

const V2: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"com.acme.shop","fields":[
  {"name":"order_id","type":{"type":"string","logicalType":"uuid"}},
  {"name":"customer_id","type":"string"},
  {"name":"total_cents","type":"long"},
  {"name":"currency","type":"string"},
  {"name":"items","type":"long"},
  {"name":"express","type":"boolean"},
  {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID","SHIPPED","CANCELLED"]}},
  {"name":"coupon","type":["null","string"],"default":null},
  {"name":"tags","type":{"type":"array","items":"string"}},
  {"name":"placed_at","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"weight_kg","type":"double"},
  {"name":"channel","type":"string","default":"web"}
]}"#;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
    customer_id: String,
    total_cents: i64,
    currency: String,
    items: i32,
    express: bool,
    status: String,
    coupon: Option<String>,
    tags: Vec<String>,
    placed_at: String,
    weight_kg: f64,
}

fn event() -> OrderPlaced {
    OrderPlaced {
        order_id: "0190a6d2-3c4e-7a2b-9f00-123456789abc".into(),
        customer_id: "customer-48213".into(),
        total_cents: 129_990,
        currency: "EUR".into(),
        items: 3,
        express: true,
        status: "PAID".into(),
        coupon: None,
        tags: vec!["gift".into(), "priority".into()],
        placed_at: "2024-05-01T12:30:00.123456Z".into(),
        weight_kg: 2.75,
    }
}

fn batch_size(f: &mut impl FnMut()) -> u64 {
    let start = Instant::now();
    let mut calls = 0_u64;
    while start.elapsed() < Duration::from_millis(30) {
        f();
        calls += 1;
    }
    #[allow(clippy::cast_precision_loss)]
    let per_call = start.elapsed().as_nanos() as f64 / calls as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let batch = ((60_000_000.0 / per_call) as u64).max(1);
    batch
}

fn time_batch(f: &mut impl FnMut(), batch: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..batch {
        f();
    }
    #[allow(clippy::cast_precision_loss)]
    let ns = t.elapsed().as_nanos() as f64 / batch as f64;
    ns
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Median ns per call of `a` and of `b`, over 15 interleaved batches of about
/// 60 ms each, so that load from other processes hits both alike.
fn measure_pair(mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let (batch_a, batch_b) = (batch_size(&mut a), batch_size(&mut b));
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        sa.push(time_batch(&mut a, batch_a));
        sb.push(time_batch(&mut b, batch_b));
    }
    (median(sa), median(sb))
}

fn measure(mut f: impl FnMut()) -> f64 {
    let batch = batch_size(&mut f);
    median((0..15).map(|_| time_batch(&mut f, batch)).collect())
}

fn main() {
    let codec = AvroCodec::new(
        AvroSchemas::new()
            .with(T, 1, V1)
            .unwrap()
            .with(T, 2, V2)
            .unwrap(),
    );
    let typed = event();
    let payload: Value = serde_json::to_value(&typed).unwrap();
    let avro = codec.encode(T, 1, &payload).unwrap();
    let json = serde_json::to_vec(&payload).unwrap();
    assert_eq!(codec.decode(T, 1, &avro).unwrap(), payload);

    let row = |name: &'static str, avro_ns: f64, json_ns: f64| {
        println!(
            "{name:<48} {avro_ns:>10.0} {json_ns:>10.0} {:>8.2}",
            avro_ns / json_ns
        );
    };
    println!(
        "payload: {} fields; Avro {} bytes, JSON {} bytes ({:.0}%)",
        11,
        avro.len(),
        json.len(),
        100.0 * avro.len() as f64 / json.len() as f64
    );
    println!(
        "{:<48} {:>10} {:>10} {:>8}",
        "operation (ns per event, median)", "Avro", "JSON", "Avro/JSON"
    );

    // Value level: what the Codec port does (payload as serde_json::Value <-> bytes).
    let (enc_avro, enc_json) = measure_pair(
        || {
            black_box(codec.encode(T, 1, black_box(&payload)).unwrap());
        },
        || {
            black_box(serde_json::to_vec(black_box(&payload)).unwrap());
        },
    );
    row("encode  Value -> bytes", enc_avro, enc_json);
    let (dec_avro, dec_json) = measure_pair(
        || {
            black_box(codec.decode(T, 1, black_box(&avro)).unwrap());
        },
        || {
            black_box(serde_json::from_slice::<Value>(black_box(&json)).unwrap());
        },
    );
    row("decode  bytes -> Value", dec_avro, dec_json);

    // The same with the wire numbers of timestamps instead of RFC 3339 strings.
    let numbers = codec.clone().with_mapping(JsonMapping {
        time: TimeAs::Numbers,
        ..JsonMapping::default()
    });
    let (dec_numbers, dec_json_numbers) = measure_pair(
        || {
            black_box(numbers.decode(T, 1, black_box(&avro)).unwrap());
        },
        || {
            black_box(serde_json::from_slice::<Value>(black_box(&json)).unwrap());
        },
    );
    row(
        "decode  bytes -> Value (timestamps as numbers)",
        dec_numbers,
        dec_json_numbers,
    );

    // Typed: the application's struct on each side (Event::to_payload + codec).
    let (enc_avro_t, enc_json_t) = measure_pair(
        || {
            let v = serde_json::to_value(black_box(&typed)).unwrap();
            black_box(codec.encode(T, 1, &v).unwrap());
        },
        || {
            black_box(serde_json::to_vec(black_box(&typed)).unwrap());
        },
    );
    row("encode  struct -> bytes", enc_avro_t, enc_json_t);
    let (dec_avro_t, dec_json_t) = measure_pair(
        || {
            let v = codec.decode(T, 1, black_box(&avro)).unwrap();
            black_box(serde_json::from_value::<OrderPlaced>(v).unwrap());
        },
        || {
            black_box(serde_json::from_slice::<OrderPlaced>(black_box(&json)).unwrap());
        },
    );
    row("decode  bytes -> struct", dec_avro_t, dec_json_t);

    // Reading an old version: v1 bytes resolved to the v2 reader in one pass
    // (JSON has no schema; its figure is the plain decode for reference).
    let (v1, v2) = (
        codec.schemas().get(T, 1).unwrap(),
        codec.schemas().get(T, 2).unwrap(),
    );
    let dec_resolve = measure(|| {
        black_box(codec.decode_with(v1, v2, black_box(&avro)).unwrap());
    });
    row(
        "decode  v1 bytes -> v2 Value (resolution)",
        dec_resolve,
        dec_json,
    );

    // apache-avro's own path (Value model), for reference against this crate's.
    let schema = v1.schema();
    let apache_value = apache_avro::from_avro_datum(schema, &mut &avro[..], None).unwrap();
    let enc_apache = measure(|| {
        black_box(apache_avro::to_avro_datum(schema, black_box(apache_value.clone())).unwrap());
    });
    let dec_apache = measure(|| {
        black_box(apache_avro::from_avro_datum(schema, &mut black_box(&avro[..]), None).unwrap());
    });
    println!(
        "{:<48} {enc_apache:>10.0}",
        "apache-avro to_avro_datum (its Value)"
    );
    println!(
        "{:<48} {dec_apache:>10.0}",
        "apache-avro from_avro_datum (its Value)"
    );
    println!(
        "machine: {} logical CPUs",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
}
