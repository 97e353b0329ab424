//! Avro binary → JSON value, read with the writer's schema and resolved to the
//! reader's schema by the rules of the Avro specification.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::RecordField;
use serde_json::{Map, Value};

use crate::default::default_to_json;
use crate::error::{AvroError, Result};
use crate::logical::{self, TimeKind};
use crate::mapping::{JsonMapping, TimeAs, bytes_to_json};
use crate::path::Path;
use crate::schema::{Phys, deref, fullname, inner_namespace, names_match, type_name};

/// Most items in one array or map block that hold no bytes (nulls).
const MAX_EMPTY_ITEMS: u64 = 1 << 24;

pub(crate) struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    wnames: &'a HashMap<String, Schema>,
    rnames: &'a HashMap<String, Schema>,
    mapping: JsonMapping,
}

fn resolution(path: &Path<'_>, reason: impl Into<String>) -> AvroError {
    AvroError::Resolution {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn malformed(path: &Path<'_>, reason: impl Into<String>) -> AvroError {
    AvroError::Malformed {
        path: path.to_string(),
        reason: reason.into(),
    }
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(
        data: &'a [u8],
        wnames: &'a HashMap<String, Schema>,
        rnames: &'a HashMap<String, Schema>,
        mapping: JsonMapping,
    ) -> Self {
        Self {
            data,
            pos: 0,
            wnames,
            rnames,
            mapping,
        }
    }

    /// Reads one datum and checks that no byte is left over.
    pub(crate) fn read_datum(mut self, writer: &'a Schema, reader: &'a Schema) -> Result<Value> {
        let value = self.read(writer, None, reader, None, &Path::ROOT)?;
        if self.pos != self.data.len() {
            return Err(malformed(
                &Path::ROOT,
                format!(
                    "{} byte(s) left after the value: the data was not written with this schema",
                    self.data.len() - self.pos
                ),
            ));
        }
        Ok(value)
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize, path: &Path<'_>) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(AvroError::Truncated {
                path: path.to_string(),
                needed: n - self.remaining(),
                remaining: self.remaining(),
            });
        }
        let slice = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    #[allow(clippy::cast_possible_wrap)] // zig-zag is a bit-level mapping
    fn read_long(&mut self, path: &Path<'_>) -> Result<i64> {
        let mut z: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&b) = self.data.get(self.pos) else {
                return Err(AvroError::Truncated {
                    path: path.to_string(),
                    needed: 1,
                    remaining: 0,
                });
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(malformed(path, "varint longer than 64 bits"));
            }
            z |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(malformed(path, "varint longer than 64 bits"));
            }
        }
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    fn read_int(&mut self, path: &Path<'_>) -> Result<i64> {
        let n = self.read_long(path)?;
        if i32::try_from(n).is_err() {
            return Err(malformed(path, format!("{n} does not fit an int")));
        }
        Ok(n)
    }

    fn read_len(&mut self, path: &Path<'_>) -> Result<usize> {
        let n = self.read_long(path)?;
        usize::try_from(n).map_err(|_| malformed(path, format!("negative length {n}")))
    }

    fn read_bytes(&mut self, path: &Path<'_>) -> Result<&'a [u8]> {
        let n = self.read_len(path)?;
        self.take(n, path)
    }

    /// Reads the next block count of an array or map (0 at the end).
    fn block(&mut self, item: &Schema, path: &Path<'_>) -> Result<u64> {
        let count = self.read_long(path)?;
        let count = if count < 0 {
            self.read_long(path)?; // byte size of the block
            count.unsigned_abs()
        } else {
            count.unsigned_abs()
        };
        let empty_items = matches!(Phys::of(item), Phys::Null);
        let limit = if empty_items {
            MAX_EMPTY_ITEMS
        } else {
            self.remaining() as u64
        };
        if count > limit {
            return Err(malformed(
                path,
                format!("block of {count} items is larger than the data"),
            ));
        }
        Ok(count)
    }

    fn number(&self, n: i64, reader: &Schema) -> Value {
        if self.mapping.time == TimeAs::Strings
            && let Some(time) = TimeKind::of(reader)
            && let Some(s) = time.render(n)
        {
            return Value::String(s);
        }
        Value::from(n)
    }

    fn float(f: f64, path: &Path<'_>) -> Result<Value> {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| malformed(path, format!("{f} cannot be represented in JSON")))
    }

    #[allow(clippy::too_many_lines)]
    pub(crate) fn read(
        &mut self,
        w: &'a Schema,
        wns: Option<&'a str>,
        r: &'a Schema,
        rns: Option<&'a str>,
        path: &Path<'_>,
    ) -> Result<Value> {
        let (w, wns) = deref(w, wns, self.wnames).map_err(|e| resolution(path, e))?;
        let (r, rns) = deref(r, rns, self.rnames).map_err(|e| resolution(path, e))?;
        if let Schema::Union(wu) = w {
            let i = self.read_long(path)?;
            let branch = usize::try_from(i)
                .ok()
                .and_then(|i| wu.variants().get(i))
                .ok_or_else(|| {
                    malformed(
                        path,
                        format!(
                            "union branch {i} out of range (union of {})",
                            wu.variants().len()
                        ),
                    )
                })?;
            return self.read(branch, wns, r, rns, path);
        }
        if let Schema::Union(ru) = r {
            let (branch, bns) =
                self.reader_branch(w, wns, ru.variants(), rns)
                    .ok_or_else(|| {
                        let names: Vec<_> =
                            ru.variants().iter().map(|b| type_name(b, rns)).collect();
                        resolution(
                            path,
                            format!(
                                "writer type {} matches no branch of the reader's union [{}]",
                                type_name(w, wns),
                                names.join(", ")
                            ),
                        )
                    })?;
            return self.read(w, wns, branch, bns, path);
        }
        let (wp, rp) = (Phys::of(w), Phys::of(r));
        if same(w, r) {
            // Reading with the writer's own schema: nothing to resolve.
        } else if !wp.promotes_to(rp) {
            return Err(resolution(
                path,
                format!(
                    "writer type {} cannot be read as {}",
                    type_name(w, wns),
                    type_name(r, rns)
                ),
            ));
        }
        if !same(w, r) && !names_match(w, wns, r, rns) {
            return Err(resolution(
                path,
                format!(
                    "writer's named type `{}` does not match reader's `{}` (nor its aliases)",
                    type_name(w, wns),
                    type_name(r, rns)
                ),
            ));
        }
        match wp {
            Phys::Null => Ok(Value::Null),
            Phys::Boolean => match self.take(1, path)?[0] {
                0 => Ok(Value::Bool(false)),
                1 => Ok(Value::Bool(true)),
                b => Err(malformed(path, format!("boolean byte {b}"))),
            },
            Phys::Int | Phys::Long => {
                let n = if wp == Phys::Int {
                    self.read_int(path)?
                } else {
                    self.read_long(path)?
                };
                match rp {
                    Phys::Int | Phys::Long => Ok(self.number(n, r)),
                    #[allow(clippy::cast_precision_loss)]
                    // the promotion is lossy by the specification
                    Phys::Float => Self::float(f64::from(n as f32), path),
                    #[allow(clippy::cast_precision_loss)]
                    _ => Self::float(n as f64, path),
                }
            }
            Phys::Float => {
                let b = self.take(4, path)?;
                let f = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                // Shortest decimal form of the float, so 0.1f32 reads as 0.1.
                let f = if f.is_finite() {
                    f.to_string().parse::<f64>().unwrap_or(f64::from(f))
                } else {
                    f64::from(f)
                };
                Self::float(f, path)
            }
            Phys::Double => {
                let b = self.take(8, path)?;
                Self::float(
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                    path,
                )
            }
            Phys::Bytes | Phys::String => {
                let bytes = self.read_bytes(path)?;
                self.bytes_value(bytes, r, path)
            }
            Phys::Fixed(size) => {
                let bytes = self.take(size, path)?;
                self.bytes_value(bytes, r, path)
            }
            Phys::Enum => {
                let (Schema::Enum(we), Schema::Enum(re)) = (w, r) else {
                    unreachable!("checked kinds")
                };
                let i = self.read_int(path)?;
                let symbol = usize::try_from(i)
                    .ok()
                    .and_then(|i| we.symbols.get(i))
                    .ok_or_else(|| malformed(path, format!("enum index {i} out of range")))?;
                if same(w, r) || re.symbols.contains(symbol) {
                    return Ok(Value::String(symbol.clone()));
                }
                match &re.default {
                    Some(d) => Ok(Value::String(d.clone())),
                    None => Err(resolution(
                        path,
                        format!(
                            "symbol `{symbol}` is not in the reader's enum `{}`, which has no default",
                            fullname(&re.name, rns)
                        ),
                    )),
                }
            }
            Phys::Array => {
                let (Schema::Array(wa), Schema::Array(ra)) = (w, r) else {
                    unreachable!("checked kinds")
                };
                let mut items = Vec::new();
                loop {
                    let count = self.block(&wa.items, path)?;
                    if count == 0 {
                        break;
                    }
                    for _ in 0..count {
                        let p = path.index(items.len());
                        items.push(self.read(&wa.items, wns, &ra.items, rns, &p)?);
                    }
                }
                Ok(Value::Array(items))
            }
            Phys::Map => {
                let (Schema::Map(wm), Schema::Map(rm)) = (w, r) else {
                    unreachable!("checked kinds")
                };
                let mut entries = Map::new();
                loop {
                    let count = self.block(&wm.types, path)?;
                    if count == 0 {
                        break;
                    }
                    for _ in 0..count {
                        let key = self.read_bytes(path)?;
                        let key = std::str::from_utf8(key)
                            .map_err(|_| malformed(path, "map key is not UTF-8"))?;
                        let value = self.read(&wm.types, wns, &rm.types, rns, &path.field(key))?;
                        entries.insert(key.to_owned(), value);
                    }
                }
                Ok(Value::Object(entries))
            }
            Phys::Record => {
                let (Schema::Record(wr), Schema::Record(rr)) = (w, r) else {
                    unreachable!("checked kinds")
                };
                let (wins, rins) = (
                    inner_namespace(&wr.name, wns),
                    inner_namespace(&rr.name, rns),
                );
                let mut out = Map::new();
                if same(w, r) {
                    for f in &wr.fields {
                        let v =
                            self.read(&f.schema, wins, &f.schema, rins, &path.field(&f.name))?;
                        out.insert(f.name.clone(), v);
                    }
                    return Ok(Value::Object(out));
                }
                for wf in &wr.fields {
                    match reader_field(&rr.fields, &wf.name) {
                        Some(rf) => {
                            let v = self.read(
                                &wf.schema,
                                wins,
                                &rf.schema,
                                rins,
                                &path.field(&rf.name),
                            )?;
                            out.insert(rf.name.clone(), v);
                        }
                        None => self.skip(&wf.schema, wins, &path.field(&wf.name))?,
                    }
                }
                if out.len() < rr.fields.len() {
                    for rf in &rr.fields {
                        if out.contains_key(&rf.name) {
                            continue;
                        }
                        let Some(default) = &rf.default else {
                            return Err(resolution(
                                &path.field(&rf.name),
                                format!(
                                    "reader field `{}` is missing from the writer's data and has no default",
                                    rf.name
                                ),
                            ));
                        };
                        let v =
                            default_to_json(&rf.schema, rins, self.rnames, default, self.mapping)
                                .map_err(|e| {
                                resolution(&path.field(&rf.name), format!("bad default: {e}"))
                            })?;
                        out.insert(rf.name.clone(), v);
                    }
                }
                Ok(Value::Object(out))
            }
            Phys::Union => unreachable!("unions handled above"),
        }
    }

    fn bytes_value(&self, bytes: &[u8], r: &Schema, path: &Path<'_>) -> Result<Value> {
        match r {
            Schema::String | Schema::Uuid => std::str::from_utf8(bytes)
                .map(|s| Value::String(s.to_owned()))
                .map_err(|_| malformed(path, "string is not UTF-8")),
            Schema::Decimal(d) => {
                let n = logical::decimal_from_bytes(bytes).map_err(|e| malformed(path, e))?;
                Ok(Value::String(logical::decimal_to_string(n, d.scale)))
            }
            Schema::Duration => Ok(logical::duration_to_json(bytes)),
            _ => Ok(bytes_to_json(bytes, self.mapping.bytes)),
        }
    }

    /// The reader union's branch for a non-union writer type: the first of the
    /// same kind (and name), else the first the writer type promotes to.
    fn reader_branch(
        &self,
        w: &Schema,
        wns: Option<&'a str>,
        branches: &'a [Schema],
        rns: Option<&'a str>,
    ) -> Option<(&'a Schema, Option<&'a str>)> {
        let wp = Phys::of(w);
        let resolved: Vec<_> = branches
            .iter()
            .filter_map(|b| deref(b, rns, self.rnames).ok())
            .collect();
        resolved
            .iter()
            .find(|(b, bns)| Phys::of(b) == wp && names_match(w, wns, b, *bns))
            .or_else(|| {
                resolved
                    .iter()
                    .find(|(b, bns)| wp.promotes_to(Phys::of(b)) && names_match(w, wns, b, *bns))
            })
            .copied()
    }

    /// Skips a value written with `w`.
    fn skip(&mut self, w: &'a Schema, wns: Option<&'a str>, path: &Path<'_>) -> Result<()> {
        let (w, wns) = deref(w, wns, self.wnames).map_err(|e| resolution(path, e))?;
        match w {
            Schema::Union(u) => {
                let i = self.read_long(path)?;
                let branch = usize::try_from(i)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| malformed(path, format!("union branch {i} out of range")))?;
                self.skip(branch, wns, path)
            }
            Schema::Record(r) => {
                let inner = inner_namespace(&r.name, wns);
                for f in &r.fields {
                    self.skip(&f.schema, inner, &path.field(&f.name))?;
                }
                Ok(())
            }
            Schema::Array(a) => self.skip_blocks(&a.items, None, wns, path),
            Schema::Map(m) => self.skip_blocks(&m.types, Some(()), wns, path),
            other => match Phys::of(other) {
                Phys::Null => Ok(()),
                Phys::Boolean => self.take(1, path).map(drop),
                Phys::Int | Phys::Long | Phys::Enum => self.read_long(path).map(drop),
                Phys::Float => self.take(4, path).map(drop),
                Phys::Double => self.take(8, path).map(drop),
                Phys::Bytes | Phys::String => self.read_bytes(path).map(drop),
                Phys::Fixed(n) => self.take(n, path).map(drop),
                _ => Err(resolution(path, "cannot skip this type")),
            },
        }
    }

    fn skip_blocks(
        &mut self,
        item: &'a Schema,
        keyed: Option<()>,
        ns: Option<&'a str>,
        path: &Path<'_>,
    ) -> Result<()> {
        loop {
            let count = self.read_long(path)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                let size = self.read_len(path)?;
                self.take(size, path)?;
                continue;
            }
            let count = count.unsigned_abs();
            if !matches!(Phys::of(item), Phys::Null) && count > self.remaining() as u64 {
                return Err(malformed(
                    path,
                    format!("block of {count} items is larger than the data"),
                ));
            }
            for _ in 0..count {
                if keyed.is_some() {
                    self.read_bytes(path)?;
                }
                self.skip(item, ns, path)?;
            }
        }
    }
}

fn same(a: &Schema, b: &Schema) -> bool {
    std::ptr::eq(a, b)
}

/// The reader's field for a writer field: same name, or a reader alias naming it.
fn reader_field<'r>(fields: &'r [RecordField], writer_name: &str) -> Option<&'r RecordField> {
    fields.iter().find(|f| f.name == writer_name).or_else(|| {
        fields.iter().find(|f| {
            f.aliases
                .as_ref()
                .is_some_and(|a| a.iter().any(|a| a == writer_name))
        })
    })
}
