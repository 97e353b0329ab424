//! Avro's resolution rules as a checker over two schemas.

use std::collections::{HashMap, HashSet};

use apache_avro::Schema;
use apache_avro::schema::RecordField;

use super::{Incompatibility, IncompatibilityKind as Kind};
use crate::schema::{ParsedSchema, Phys, deref, fullname, inner_namespace, names_match, type_name};

/// Every reason why data written with `writer` cannot be read with `reader`
/// (empty when it can).
///
/// ```
/// use orchestrix_avro::{ParsedSchema, compat::can_read};
/// let int = ParsedSchema::parse(r#""int""#)?;
/// let long = ParsedSchema::parse(r#""long""#)?;
/// assert!(can_read(&int, &long).is_empty()); // int promotes to long
/// assert_eq!(can_read(&long, &int)[0].kind.as_str(), "TYPE_MISMATCH");
/// # Ok::<(), orchestrix_avro::AvroError>(())
/// ```
#[must_use]
pub fn can_read(writer: &ParsedSchema, reader: &ParsedSchema) -> Vec<Incompatibility> {
    check(writer, reader, None)
}

/// `reader_is_new`: `Some(true)` when the reader is the new schema (backward
/// check), `Some(false)` when the writer is (forward), for the wording.
pub(super) fn check(
    writer: &ParsedSchema,
    reader: &ParsedSchema,
    reader_is_new: Option<bool>,
) -> Vec<Incompatibility> {
    let mut checker = Checker {
        wnames: writer.names(),
        rnames: reader.names(),
        reader_is_new,
        in_progress: HashSet::new(),
        out: Vec::new(),
    };
    checker.check(writer.schema(), None, reader.schema(), None, "", "");
    checker.out
}

struct Checker<'a> {
    wnames: &'a HashMap<String, Schema>,
    rnames: &'a HashMap<String, Schema>,
    reader_is_new: Option<bool>,
    in_progress: HashSet<(*const Schema, *const Schema)>,
    out: Vec<Incompatibility>,
}

impl<'a> Checker<'a> {
    fn push(&mut self, kind: Kind, path: &str, message: String) {
        let path = if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        };
        self.out.push(Incompatibility {
            kind,
            path,
            message,
            direction: None,
            version: None,
        });
    }

    fn labels(&self) -> (&'static str, &'static str) {
        match self.reader_is_new {
            Some(true) => ("old", "new"),
            Some(false) => ("new", "old"),
            None => ("writer", "reader"),
        }
    }

    /// Runs the checks without recording, to test one union branch.
    fn compatible(
        &mut self,
        w: &'a Schema,
        wns: Option<&'a str>,
        r: &'a Schema,
        rns: Option<&'a str>,
    ) -> bool {
        let saved = std::mem::take(&mut self.out);
        self.check(w, wns, r, rns, "", "");
        let ok = self.out.is_empty();
        self.out = saved;
        ok
    }

    fn check(
        &mut self,
        w: &'a Schema,
        wns: Option<&'a str>,
        r: &'a Schema,
        rns: Option<&'a str>,
        path: &str,
        field: &str,
    ) {
        let (Ok((w, wns)), Ok((r, rns))) = (deref(w, wns, self.wnames), deref(r, rns, self.rnames))
        else {
            self.push(
                Kind::TypeMismatch,
                path,
                "unresolvable named-type reference".into(),
            );
            return;
        };
        let key = (std::ptr::from_ref(w), std::ptr::from_ref(r));
        if !self.in_progress.insert(key) {
            return; // recursive type: already being checked
        }
        self.check_resolved(w, wns, r, rns, path, field);
        self.in_progress.remove(&key);
    }

    #[allow(clippy::too_many_lines)]
    fn check_resolved(
        &mut self,
        w: &'a Schema,
        wns: Option<&'a str>,
        r: &'a Schema,
        rns: Option<&'a str>,
        path: &str,
        field: &str,
    ) {
        let (wl, rl) = self.labels();
        let at = if field.is_empty() {
            String::new()
        } else {
            format!(" of `{field}`")
        };
        let (wp, rp) = (Phys::of(w), Phys::of(r));
        if let Schema::Union(wu) = w {
            // Every branch the writer may have written must be readable.
            for branch in wu.variants() {
                self.check(branch, wns, r, rns, path, field);
            }
            return;
        }
        if let Schema::Union(ru) = r {
            if ru
                .variants()
                .iter()
                .any(|b| self.compatible(w, wns, b, rns))
            {
                return;
            }
            // A branch of the same kind and name that fails in depth: report why.
            let same_kind = ru.variants().iter().enumerate().find_map(|(i, b)| {
                let (b, bns) = deref(b, rns, self.rnames).ok()?;
                (Phys::of(b) == wp && (named_kind(wp).is_none() || names_match(w, wns, b, bns)))
                    .then_some((i, b, bns))
            });
            match same_kind {
                Some((i, b, bns)) => self.check(w, wns, b, bns, &format!("{path}/{i}"), field),
                None => {
                    let branches: Vec<_> =
                        ru.variants().iter().map(|b| type_name(b, rns)).collect();
                    self.push(
                        Kind::MissingUnionBranch,
                        path,
                        format!(
                            "the {rl} union{at} [{}] has no branch that can read the {wl} type {}",
                            branches.join(", "),
                            type_name(w, wns)
                        ),
                    );
                }
            }
            return;
        }
        if !wp.promotes_to(rp) {
            let hint = match (wp, rp) {
                (Phys::Fixed(a), Phys::Fixed(b)) => {
                    self.push(
                        Kind::FixedSizeMismatch,
                        &format!("{path}/size"),
                        format!(
                            "fixed `{}`{at}: size changed from {a} ({wl}) to {b} ({rl})",
                            type_name(r, rns)
                        ),
                    );
                    return;
                }
                _ => String::new(),
            };
            self.push(
                Kind::TypeMismatch,
                path,
                format!(
                    "type{at} changed: {wl} type {} cannot be read as {rl} type {}{hint}",
                    type_name(w, wns),
                    type_name(r, rns)
                ),
            );
            return;
        }
        if named_kind(wp).is_some() && !names_match(w, wns, r, rns) {
            self.push(
                Kind::NameMismatch,
                &format!("{path}/name"),
                format!(
                    "name{at} changed: {wl} `{}` does not match {rl} `{}`, and the {rl} schema lists no alias for it",
                    type_name(w, wns),
                    type_name(r, rns)
                ),
            );
            return;
        }
        match (w, r) {
            (Schema::Record(wr), Schema::Record(rr)) => {
                let (wins, rins) = (
                    inner_namespace(&wr.name, wns),
                    inner_namespace(&rr.name, rns),
                );
                for (i, rf) in rr.fields.iter().enumerate() {
                    let fpath = format!("{path}/fields/{i}");
                    match writer_field(&wr.fields, rf) {
                        Some(wf) => {
                            let name = if field.is_empty() {
                                rf.name.clone()
                            } else {
                                format!("{field}.{}", rf.name)
                            };
                            self.check(
                                &wf.schema,
                                wins,
                                &rf.schema,
                                rins,
                                &format!("{fpath}/type"),
                                &name,
                            );
                        }
                        None if rf.default.is_none() => {
                            let name = if field.is_empty() {
                                rf.name.clone()
                            } else {
                                format!("{field}.{}", rf.name)
                            };
                            let message = match self.reader_is_new {
                                Some(true) => format!(
                                    "field `{}` added without a default: data written with the old schema has no value for it",
                                    name
                                ),
                                Some(false) => format!(
                                    "field `{}` removed, but the old schema gives it no default: readers of the old schema need a value",
                                    name
                                ),
                                None => format!(
                                    "reader field `{name}` has no default and is missing from the writer schema"
                                ),
                            };
                            self.push(Kind::ReaderFieldMissingDefaultValue, &fpath, message);
                        }
                        None => {}
                    }
                }
            }
            (Schema::Enum(we), Schema::Enum(re)) => {
                let missing: Vec<&str> = we
                    .symbols
                    .iter()
                    .filter(|s| !re.symbols.contains(s))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() && re.default.is_none() {
                    let name = fullname(&re.name, rns);
                    let message = match self.reader_is_new {
                        Some(true) => format!(
                            "enum `{name}`{at}: symbol(s) {} removed and the new enum has no default",
                            missing.join(", ")
                        ),
                        Some(false) => format!(
                            "enum `{name}`{at}: symbol(s) {} added and the old enum has no default",
                            missing.join(", ")
                        ),
                        None => format!(
                            "enum `{name}`{at}: the reader lacks writer symbol(s) {} and has no default",
                            missing.join(", ")
                        ),
                    };
                    self.push(
                        Kind::MissingEnumSymbols,
                        &format!("{path}/symbols"),
                        message,
                    );
                }
            }
            (Schema::Array(wa), Schema::Array(ra)) => self.check(
                &wa.items,
                wns,
                &ra.items,
                rns,
                &format!("{path}/items"),
                &format!("{field}[]"),
            ),
            (Schema::Map(wm), Schema::Map(rm)) => self.check(
                &wm.types,
                wns,
                &rm.types,
                rns,
                &format!("{path}/values"),
                &format!("{field}{{}}"),
            ),
            _ => {} // primitives, fixed (size equal by Phys), logical types: compatible
        }
    }
}

fn named_kind(p: Phys) -> Option<()> {
    matches!(p, Phys::Record | Phys::Enum | Phys::Fixed(_)).then_some(())
}

/// The writer's field for a reader field: same name, else one of the reader
/// field's aliases.
fn writer_field<'w>(fields: &'w [RecordField], reader: &RecordField) -> Option<&'w RecordField> {
    fields.iter().find(|f| f.name == reader.name).or_else(|| {
        reader.aliases.as_ref().and_then(|aliases| {
            aliases
                .iter()
                .find_map(|a| fields.iter().find(|f| &f.name == a))
        })
    })
}
