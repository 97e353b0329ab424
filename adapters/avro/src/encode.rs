//! JSON value → Avro binary, guided by the writer's schema.

use std::collections::HashMap;

use apache_avro::Schema;
use serde_json::Value;

use crate::default::default_to_json;
use crate::error::{AvroError, Result};
use crate::logical::{self, TimeKind};
use crate::mapping::{JsonMapping, json_to_bytes, kind};
use crate::path::Path;
use crate::schema::{Phys, deref, fullname, inner_namespace, type_name};

/// Appends the zig-zag varint of `n`.
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)] // zig-zag is a bit-level mapping
pub(crate) fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_len(out: &mut Vec<u8>, len: usize) {
    write_long(out, i64::try_from(len).unwrap_or(i64::MAX));
}

pub(crate) struct Encoder<'a> {
    pub(crate) names: &'a HashMap<String, Schema>,
    pub(crate) mapping: JsonMapping,
}

fn mismatch(path: &Path<'_>, reason: impl Into<String>) -> AvroError {
    AvroError::Mismatch {
        path: path.to_string(),
        reason: reason.into(),
    }
}

impl Encoder<'_> {
    pub(crate) fn encode(
        &self,
        schema: &Schema,
        ns: Option<&str>,
        value: &Value,
        out: &mut Vec<u8>,
        path: &Path<'_>,
    ) -> Result<()> {
        let (schema, ns) = deref(schema, ns, self.names).map_err(|e| mismatch(path, e))?;
        if let Some(time) = TimeKind::of(schema) {
            let n = match value {
                Value::String(s) => time.parse(s).map_err(|e| mismatch(path, e))?,
                Value::Number(_) => value
                    .as_i64()
                    .ok_or_else(|| mismatch(path, format!("{value} is not a 64-bit integer")))?,
                other => {
                    return Err(mismatch(
                        path,
                        format!(
                            "expected {} as a string or number, got {}",
                            type_name(schema, ns),
                            kind(other)
                        ),
                    ));
                }
            };
            if Phys::of(schema) == Phys::Int && i32::try_from(n).is_err() {
                return Err(mismatch(
                    path,
                    format!("{n} does not fit the 32-bit {}", type_name(schema, ns)),
                ));
            }
            write_long(out, n);
            return Ok(());
        }
        match schema {
            Schema::Null => match value {
                Value::Null => Ok(()),
                other => Err(mismatch(
                    path,
                    format!("expected null, got {}", kind(other)),
                )),
            },
            Schema::Boolean => match value {
                Value::Bool(b) => {
                    out.push(u8::from(*b));
                    Ok(())
                }
                other => Err(mismatch(
                    path,
                    format!("expected a boolean, got {}", kind(other)),
                )),
            },
            Schema::Int => {
                let n = value
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| {
                        mismatch(path, format!("expected a 32-bit integer, got {value}"))
                    })?;
                write_long(out, i64::from(n));
                Ok(())
            }
            Schema::Long => {
                let n = value.as_i64().ok_or_else(|| {
                    mismatch(path, format!("expected a 64-bit integer, got {value}"))
                })?;
                write_long(out, n);
                Ok(())
            }
            Schema::Float => {
                let f = value.as_f64().ok_or_else(|| {
                    mismatch(path, format!("expected a number, got {}", kind(value)))
                })?;
                #[allow(clippy::cast_possible_truncation)]
                // float is single precision by definition
                out.extend_from_slice(&(f as f32).to_le_bytes());
                Ok(())
            }
            Schema::Double => {
                let f = value.as_f64().ok_or_else(|| {
                    mismatch(path, format!("expected a number, got {}", kind(value)))
                })?;
                out.extend_from_slice(&f.to_le_bytes());
                Ok(())
            }
            Schema::String | Schema::Uuid => match value {
                Value::String(s) => {
                    if matches!(schema, Schema::Uuid) && !looks_like_uuid(s) {
                        return Err(mismatch(path, format!("`{s}` is not a UUID")));
                    }
                    write_len(out, s.len());
                    out.extend_from_slice(s.as_bytes());
                    Ok(())
                }
                other => Err(mismatch(
                    path,
                    format!("expected a string, got {}", kind(other)),
                )),
            },
            Schema::Bytes | Schema::BigDecimal => {
                let bytes = json_to_bytes(value).map_err(|e| mismatch(path, e))?;
                write_len(out, bytes.len());
                out.extend_from_slice(&bytes);
                Ok(())
            }
            Schema::Fixed(f) => {
                let bytes = json_to_bytes(value).map_err(|e| mismatch(path, e))?;
                if bytes.len() != f.size {
                    return Err(mismatch(
                        path,
                        format!(
                            "expected {} bytes for fixed `{}`, got {}",
                            f.size,
                            fullname(&f.name, ns),
                            bytes.len()
                        ),
                    ));
                }
                out.extend_from_slice(&bytes);
                Ok(())
            }
            Schema::Duration => {
                let bytes = match value {
                    Value::Object(_) => logical::duration_from_json(value),
                    other => json_to_bytes(other),
                }
                .map_err(|e| mismatch(path, e))?;
                if bytes.len() != 12 {
                    return Err(mismatch(path, "a duration is 12 bytes"));
                }
                out.extend_from_slice(&bytes);
                Ok(())
            }
            Schema::Decimal(d) => {
                let unscaled =
                    logical::decimal_from_json(value, d.scale).map_err(|e| mismatch(path, e))?;
                let precision_max =
                    10_i128.checked_pow(u32::try_from(d.precision).unwrap_or(u32::MAX));
                if precision_max.is_some_and(|max| unscaled.abs() >= max) {
                    return Err(mismatch(
                        path,
                        format!("{value} has more than {} digits", d.precision),
                    ));
                }
                match &*d.inner {
                    Schema::Fixed(f) => {
                        let bytes = logical::decimal_bytes(unscaled, Some(f.size))
                            .map_err(|e| mismatch(path, e))?;
                        out.extend_from_slice(&bytes);
                    }
                    _ => {
                        let bytes = logical::decimal_bytes(unscaled, None)
                            .map_err(|e| mismatch(path, e))?;
                        write_len(out, bytes.len());
                        out.extend_from_slice(&bytes);
                    }
                }
                Ok(())
            }
            Schema::Enum(e) => {
                let Value::String(symbol) = value else {
                    return Err(mismatch(
                        path,
                        format!("expected an enum symbol (string), got {}", kind(value)),
                    ));
                };
                let index = e.symbols.iter().position(|s| s == symbol).ok_or_else(|| {
                    mismatch(
                        path,
                        format!(
                            "`{symbol}` is not a symbol of enum `{}` ({})",
                            fullname(&e.name, ns),
                            e.symbols.join(", ")
                        ),
                    )
                })?;
                write_len(out, index);
                Ok(())
            }
            Schema::Array(a) => {
                let Value::Array(items) = value else {
                    return Err(mismatch(
                        path,
                        format!("expected an array, got {}", kind(value)),
                    ));
                };
                if !items.is_empty() {
                    write_len(out, items.len());
                    for (i, item) in items.iter().enumerate() {
                        self.encode(&a.items, ns, item, out, &path.index(i))?;
                    }
                }
                out.push(0);
                Ok(())
            }
            Schema::Map(m) => {
                let Value::Object(entries) = value else {
                    return Err(mismatch(
                        path,
                        format!("expected an object (map), got {}", kind(value)),
                    ));
                };
                if !entries.is_empty() {
                    write_len(out, entries.len());
                    for (k, v) in entries {
                        write_len(out, k.len());
                        out.extend_from_slice(k.as_bytes());
                        self.encode(&m.types, ns, v, out, &path.field(k))?;
                    }
                }
                out.push(0);
                Ok(())
            }
            Schema::Union(u) => {
                let (index, branch, inner) =
                    self.select_branch(u.variants(), ns, value).ok_or_else(|| {
                        let branches: Vec<_> =
                            u.variants().iter().map(|s| type_name(s, ns)).collect();
                        mismatch(
                            path,
                            format!(
                                "{} matches no branch of the union [{}]",
                                kind(value),
                                branches.join(", ")
                            ),
                        )
                    })?;
                write_len(out, index);
                self.encode(branch, ns, inner, out, path)
            }
            // A fieldless event (serde's unit variant, stored as `null`) has a
            // record with no fields: Avro has no unit type that can be named.
            Schema::Record(r) if r.fields.is_empty() && value.is_null() => Ok(()),
            Schema::Record(r) => {
                let Value::Object(obj) = value else {
                    return Err(mismatch(
                        path,
                        format!(
                            "expected an object (record `{}`), got {}",
                            fullname(&r.name, ns),
                            kind(value)
                        ),
                    ));
                };
                let inner_ns = inner_namespace(&r.name, ns);
                let mut seen = 0;
                for field in &r.fields {
                    let field_path = path.field(&field.name);
                    if let Some(v) = obj.get(&field.name) {
                        seen += 1;
                        self.encode(&field.schema, inner_ns, v, out, &field_path)?;
                    } else if let Some(default) = &field.default {
                        let v = default_to_json(
                            &field.schema,
                            inner_ns,
                            self.names,
                            default,
                            self.mapping,
                        )
                        .map_err(|e| mismatch(&field_path, format!("bad default: {e}")))?;
                        self.encode(&field.schema, inner_ns, &v, out, &field_path)?;
                    } else if is_nullable(&field.schema) {
                        self.encode(&field.schema, inner_ns, &Value::Null, out, &field_path)?;
                    } else {
                        return Err(mismatch(
                            &field_path,
                            "missing field (it has no default and is not nullable)",
                        ));
                    }
                }
                if seen < obj.len() {
                    let extra: Vec<&str> = obj
                        .keys()
                        .filter(|k| !r.lookup.contains_key(*k))
                        .map(String::as_str)
                        .collect();
                    return Err(mismatch(
                        path,
                        format!(
                            "field(s) {} not in the schema of record `{}`",
                            extra.join(", "),
                            fullname(&r.name, ns)
                        ),
                    ));
                }
                Ok(())
            }
            Schema::Ref { .. } => Err(mismatch(path, "unresolved reference")),
            _ => Err(mismatch(
                path,
                format!("unsupported schema type {}", type_name(schema, ns)),
            )),
        }
    }

    /// Picks the union branch for a JSON value: the tagged form
    /// `{"type name": value}` first, then the first branch the value's kind fits.
    fn select_branch<'s, 'v>(
        &self,
        branches: &'s [Schema],
        ns: Option<&str>,
        value: &'v Value,
    ) -> Option<(usize, &'s Schema, &'v Value)> {
        if let Value::Object(obj) = value
            && obj.len() == 1
        {
            let (tag, inner) = obj.iter().next()?;
            for (i, b) in branches.iter().enumerate() {
                let name = type_name(b, ns);
                if name == *tag || name.rsplit('.').next() == Some(tag.as_str()) {
                    return Some((i, b, inner));
                }
            }
        }
        let fits = |b: &Schema| -> bool {
            let Ok((b, _)) = deref(b, ns, self.names) else {
                return false;
            };
            match (value, b) {
                (Value::Null, Schema::Null) | (Value::Bool(_), Schema::Boolean) => true,
                (Value::Number(n), _) if TimeKind::of(b).is_some() => n.is_i64(),
                (Value::Number(n), Schema::Int) => {
                    n.as_i64().is_some_and(|n| i32::try_from(n).is_ok())
                }
                (Value::Number(n), Schema::Long) => n.is_i64(),
                (Value::Number(_), Schema::Float | Schema::Double | Schema::Decimal(_)) => true,
                (Value::String(_), Schema::String) => true,
                (Value::String(s), Schema::Uuid) => looks_like_uuid(s),
                (Value::String(s), Schema::Enum(e)) => e.symbols.iter().any(|x| x == s),
                (Value::String(s), _) if TimeKind::of(b).is_some() => {
                    TimeKind::of(b).is_some_and(|t| t.parse(s).is_ok())
                }
                (Value::String(_), Schema::Decimal(_)) => true,
                (Value::String(_), Schema::Bytes | Schema::Fixed(_)) => true,
                (Value::Array(_), Schema::Array(_) | Schema::Bytes | Schema::Fixed(_)) => true,
                (Value::Object(obj), Schema::Record(r)) => {
                    obj.keys().all(|k| r.lookup.contains_key(k))
                        && r.fields.iter().all(|f| {
                            obj.contains_key(&f.name)
                                || f.default.is_some()
                                || is_nullable(&f.schema)
                        })
                }
                (Value::Object(_), Schema::Map(_) | Schema::Duration) => true,
                _ => false,
            }
        };
        // Exact kinds first (a number prefers int/long over float/double by order of
        // declaration, as the branches are tried in order).
        branches
            .iter()
            .enumerate()
            .find(|(_, b)| fits(b))
            .map(|(i, b)| (i, b, value))
    }
}

fn is_nullable(schema: &Schema) -> bool {
    matches!(schema, Schema::Union(u) if u.variants().iter().any(|b| matches!(b, Schema::Null)))
}

pub(crate) fn looks_like_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}
