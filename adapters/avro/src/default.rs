//! Field defaults: from the Avro JSON encoding used in schemas to the JSON
//! mapping of this crate.

use std::collections::HashMap;

use apache_avro::Schema;
use serde_json::Value;

use crate::logical::{self, TimeKind};
use crate::mapping::{JsonMapping, TimeAs, bytes_to_json};
use crate::schema::{deref, inner_namespace};

/// Converts a schema default (Avro's JSON encoding: bytes as ISO-8859-1
/// strings, a union's default for its first branch) to this crate's mapping.
pub(crate) fn default_to_json(
    schema: &Schema,
    ns: Option<&str>,
    names: &HashMap<String, Schema>,
    default: &Value,
    mapping: JsonMapping,
) -> Result<Value, String> {
    let (schema, ns) = deref(schema, ns, names)?;
    if let Some(time) = TimeKind::of(schema) {
        return match (default, mapping.time) {
            (Value::Number(n), TimeAs::Strings) => {
                let n = n.as_i64().ok_or("a time default must be an integer")?;
                time.render(n)
                    .map(Value::String)
                    .ok_or_else(|| format!("default {n} is out of range"))
            }
            _ => Ok(default.clone()),
        };
    }
    match schema {
        Schema::Union(u) => {
            let first = u.variants().first().ok_or("empty union")?;
            default_to_json(first, ns, names, default, mapping)
        }
        Schema::Bytes | Schema::Fixed(_) | Schema::BigDecimal => {
            Ok(bytes_to_json(&latin1(default)?, mapping.bytes))
        }
        Schema::Decimal(d) => {
            let bytes = latin1(default)?;
            Ok(Value::String(logical::decimal_to_string(
                logical::decimal_from_bytes(&bytes)?,
                d.scale,
            )))
        }
        Schema::Duration => Ok(logical::duration_to_json(&latin1(default)?)),
        Schema::Array(a) => match default {
            Value::Array(items) => items
                .iter()
                .map(|i| default_to_json(&a.items, ns, names, i, mapping))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            _ => Err("an array default must be an array".into()),
        },
        Schema::Map(m) => match default {
            Value::Object(obj) => obj
                .iter()
                .map(|(k, v)| Ok((k.clone(), default_to_json(&m.types, ns, names, v, mapping)?)))
                .collect::<Result<serde_json::Map<_, _>, String>>()
                .map(Value::Object),
            _ => Err("a map default must be an object".into()),
        },
        Schema::Record(r) => {
            let Value::Object(obj) = default else {
                return Err("a record default must be an object".into());
            };
            let inner = inner_namespace(&r.name, ns);
            let mut out = serde_json::Map::new();
            for f in &r.fields {
                let v = match (obj.get(&f.name), &f.default) {
                    (Some(v), _) | (None, Some(v)) => {
                        default_to_json(&f.schema, inner, names, v, mapping)?
                    }
                    (None, None) => {
                        return Err(format!(
                            "the record default has no value for field `{}`",
                            f.name
                        ));
                    }
                };
                out.insert(f.name.clone(), v);
            }
            Ok(Value::Object(out))
        }
        _ => Ok(default.clone()),
    }
}

/// Avro's JSON encoding of bytes: each character is one byte (U+0000–U+00FF).
fn latin1(default: &Value) -> Result<Vec<u8>, String> {
    let Value::String(s) = default else {
        return Err("a bytes default must be a string".into());
    };
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).map_err(|_| format!("character {c:?} is not a byte")))
        .collect()
}
