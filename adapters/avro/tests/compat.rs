//! Table-driven tests of the Avro resolution rules behind the compatibility
//! checker, cross-checked with the resolving decoder (what is declared
//! compatible must decode) and with `apache-avro`'s own checker where it
//! implements the rule.

use orchestrix_avro::compat::{
    CompatibilityLevel, IncompatibilityKind, can_read, check_compatibility,
};
use orchestrix_avro::{AvroCodec, AvroSchemas, ParsedSchema};
use serde_json::{Value, json};

fn rec(name: &str, fields: &str) -> String {
    format!(r#"{{"type":"record","name":"{name}","namespace":"t","fields":[{fields}]}}"#)
}

fn field(name: &str, ty: &str) -> String {
    format!(r#"{{"name":"{name}","type":{ty}}}"#)
}

struct Case {
    name: &'static str,
    writer: String,
    reader: String,
    /// Expected kinds (empty: compatible).
    expect: Vec<IncompatibilityKind>,
    /// A value in the writer's JSON mapping, to decode through resolution.
    sample: Option<Value>,
    /// Whether apache-avro's `SchemaCompatibility` gets the rule right (it
    /// lacks enum defaults, named-type aliases and multi-branch writer unions
    /// read by a non-union reader).
    apache_knows: bool,
}

fn case(
    name: &'static str,
    writer: &str,
    reader: &str,
    expect: &[IncompatibilityKind],
    sample: Option<Value>,
) -> Case {
    Case {
        name,
        writer: writer.to_owned(),
        reader: reader.to_owned(),
        expect: expect.to_vec(),
        sample,
        apache_knows: true,
    }
}

#[allow(clippy::too_many_lines)]
fn table() -> Vec<Case> {
    use IncompatibilityKind::*;
    let p = |t: &str| format!("\"{t}\"");
    let mut cases = vec![
        // Numeric promotions.
        case("int → long", &p("int"), &p("long"), &[], Some(json!(7))),
        case("int → float", &p("int"), &p("float"), &[], Some(json!(7))),
        case("int → double", &p("int"), &p("double"), &[], Some(json!(7))),
        case(
            "long → float",
            &p("long"),
            &p("float"),
            &[],
            Some(json!(1_i64 << 40)),
        ),
        case(
            "long → double",
            &p("long"),
            &p("double"),
            &[],
            Some(json!(-3)),
        ),
        case(
            "float → double",
            &p("float"),
            &p("double"),
            &[],
            Some(json!(1.5)),
        ),
        case("long ↛ int", &p("long"), &p("int"), &[TypeMismatch], None),
        case(
            "double ↛ float",
            &p("double"),
            &p("float"),
            &[TypeMismatch],
            None,
        ),
        case(
            "float ↛ long",
            &p("float"),
            &p("long"),
            &[TypeMismatch],
            None,
        ),
        case(
            "int ↛ string",
            &p("int"),
            &p("string"),
            &[TypeMismatch],
            None,
        ),
        case(
            "boolean ↛ int",
            &p("boolean"),
            &p("int"),
            &[TypeMismatch],
            None,
        ),
        // string ↔ bytes.
        case(
            "string → bytes",
            &p("string"),
            &p("bytes"),
            &[],
            Some(json!("hé")),
        ),
        case(
            "bytes → string",
            &p("bytes"),
            &p("string"),
            &[],
            Some(json!([104, 105])),
        ),
        // Unions.
        case(
            "int → [null, long]",
            &p("int"),
            r#"["null","long"]"#,
            &[],
            Some(json!(5)),
        ),
        case(
            "string → [null, int]",
            &p("string"),
            r#"["null","int"]"#,
            &[MissingUnionBranch],
            None,
        ),
        case(
            "[null, int] → [null, int, string]",
            r#"["null","int"]"#,
            r#"["null","int","string"]"#,
            &[],
            Some(json!(3)),
        ),
        case(
            "[null, int, string] → [null, int]",
            r#"["null","int","string"]"#,
            r#"["null","int"]"#,
            &[MissingUnionBranch],
            None,
        ),
        // Java's SchemaCompatibility checks each writer branch against a non-union
        // reader; apache-avro 0.21 only accepts single-branch writer unions here.
        Case {
            apache_knows: false,
            ..case(
                "[int, long] → long (every branch promotes)",
                r#"["int","long"]"#,
                &p("long"),
                &[],
                Some(json!(4)),
            )
        },
        case(
            "[null, int] → int",
            r#"["null","int"]"#,
            &p("int"),
            &[TypeMismatch],
            None,
        ),
        case(
            "[int] → int (single-branch union)",
            r#"["int"]"#,
            &p("int"),
            &[],
            Some(json!(9)),
        ),
        // Enums.
        case(
            "enum symbol added",
            r#"{"type":"enum","name":"E","symbols":["A","B"]}"#,
            r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#,
            &[],
            Some(json!("B")),
        ),
        case(
            "enum symbol removed",
            r#"{"type":"enum","name":"E","symbols":["A","B"]}"#,
            r#"{"type":"enum","name":"E","symbols":["A"]}"#,
            &[MissingEnumSymbols],
            None,
        ),
        Case {
            apache_knows: false,
            ..case(
                "enum symbol removed, reader has a default",
                r#"{"type":"enum","name":"E","symbols":["A","B"]}"#,
                r#"{"type":"enum","name":"E","symbols":["A","UNKNOWN"],"default":"UNKNOWN"}"#,
                &[],
                Some(json!("B")),
            )
        },
        case(
            "enum renamed",
            r#"{"type":"enum","name":"E","symbols":["A"]}"#,
            r#"{"type":"enum","name":"F","symbols":["A"]}"#,
            &[NameMismatch],
            None,
        ),
        // Fixed.
        case(
            "fixed same size",
            r#"{"type":"fixed","name":"H","size":2}"#,
            r#"{"type":"fixed","name":"H","size":2}"#,
            &[],
            Some(json!([1, 2])),
        ),
        case(
            "fixed size changed",
            r#"{"type":"fixed","name":"H","size":2}"#,
            r#"{"type":"fixed","name":"H","size":4}"#,
            &[FixedSizeMismatch],
            None,
        ),
        // Records: defaults, removed fields, aliases.
        case(
            "field added with a default",
            &rec("R", &field("a", "\"int\"")),
            &rec(
                "R",
                &[
                    field("a", "\"int\""),
                    r#"{"name":"b","type":"string","default":"x"}"#.into(),
                ]
                .join(","),
            ),
            &[],
            Some(json!({"a": 1})),
        ),
        case(
            "field added without a default",
            &rec("R", &field("a", "\"int\"")),
            &rec(
                "R",
                &[field("a", "\"int\""), field("b", "\"string\"")].join(","),
            ),
            &[ReaderFieldMissingDefaultValue],
            None,
        ),
        case(
            "nullable field added with null default",
            &rec("R", &field("a", "\"int\"")),
            &rec(
                "R",
                &[
                    field("a", "\"int\""),
                    r#"{"name":"b","type":["null","string"],"default":null}"#.into(),
                ]
                .join(","),
            ),
            &[],
            Some(json!({"a": 1})),
        ),
        case(
            "field removed (reader ignores it)",
            &rec(
                "R",
                &[field("a", "\"int\""), field("b", "\"string\"")].join(","),
            ),
            &rec("R", &field("a", "\"int\"")),
            &[],
            Some(json!({"a": 1, "b": "gone"})),
        ),
        case(
            "field renamed with an alias",
            &rec("R", &field("old", "\"int\"")),
            &rec("R", r#"{"name":"new","type":"int","aliases":["old"]}"#),
            &[],
            Some(json!({"old": 3})),
        ),
        case(
            "field renamed without an alias",
            &rec("R", &field("old", "\"int\"")),
            &rec("R", &field("new", "\"int\"")),
            &[ReaderFieldMissingDefaultValue],
            None,
        ),
        case(
            "field type changed",
            &rec("R", &field("a", "\"string\"")),
            &rec("R", &field("a", "\"int\"")),
            &[TypeMismatch],
            None,
        ),
        case(
            "field type promoted",
            &rec("R", &field("a", "\"int\"")),
            &rec("R", &field("a", "\"double\"")),
            &[],
            Some(json!({"a": 2})),
        ),
        Case {
            apache_knows: false,
            ..case(
                "record renamed with an alias",
                &rec("Old", &field("a", "\"int\"")),
                r#"{"type":"record","name":"New","namespace":"t","aliases":["t.Old"],"fields":[{"name":"a","type":"int"}]}"#,
                &[],
                Some(json!({"a": 1})),
            )
        },
        case(
            "record renamed without an alias",
            &rec("Old", &field("a", "\"int\"")),
            &rec("New", &field("a", "\"int\"")),
            &[NameMismatch],
            None,
        ),
        // Nested records, arrays and maps of promoted types.
        case(
            "nested record gains a defaulted field",
            &rec("R", &field("inner", &rec("I", &field("x", "\"int\"")))),
            &rec(
                "R",
                &field(
                    "inner",
                    &rec(
                        "I",
                        &[
                            field("x", "\"long\""),
                            r#"{"name":"y","type":"boolean","default":true}"#.into(),
                        ]
                        .join(","),
                    ),
                ),
            ),
            &[],
            Some(json!({"inner": {"x": 1}})),
        ),
        case(
            "nested record gains a field without default",
            &rec("R", &field("inner", &rec("I", &field("x", "\"int\"")))),
            &rec(
                "R",
                &field(
                    "inner",
                    &rec(
                        "I",
                        &[field("x", "\"int\""), field("y", "\"boolean\"")].join(","),
                    ),
                ),
            ),
            &[ReaderFieldMissingDefaultValue],
            None,
        ),
        case(
            "array of int → array of long",
            r#"{"type":"array","items":"int"}"#,
            r#"{"type":"array","items":"long"}"#,
            &[],
            Some(json!([1, 2, 3])),
        ),
        case(
            "array of long ↛ array of int",
            r#"{"type":"array","items":"long"}"#,
            r#"{"type":"array","items":"int"}"#,
            &[TypeMismatch],
            None,
        ),
        case(
            "map of float → map of double",
            r#"{"type":"map","values":"float"}"#,
            r#"{"type":"map","values":"double"}"#,
            &[],
            Some(json!({"k": 0.5})),
        ),
        case(
            "map ↛ array",
            r#"{"type":"map","values":"int"}"#,
            r#"{"type":"array","items":"int"}"#,
            &[TypeMismatch],
            None,
        ),
        case(
            "record in a nullable union gains a defaulted field",
            &rec(
                "R",
                &field(
                    "o",
                    &format!(r#"["null",{}]"#, rec("I", &field("x", "\"int\""))),
                ),
            ),
            &rec(
                "R",
                &field(
                    "o",
                    &format!(
                        r#"["null",{}]"#,
                        rec(
                            "I",
                            &[
                                field("x", "\"int\""),
                                r#"{"name":"y","type":"int","default":0}"#.into()
                            ]
                            .join(",")
                        )
                    ),
                ),
            ),
            &[],
            Some(json!({"o": {"x": 4}})),
        ),
        // Logical types resolve by their underlying types.
        case(
            "timestamp-millis → long",
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
            &p("long"),
            &[],
            Some(json!("2024-05-01T12:00:00Z")),
        ),
    ];
    // Two reasons at once, both reported.
    cases.push(case(
        "two problems reported",
        &rec(
            "R",
            &[field("a", "\"string\""), field("b", "\"int\"")].join(","),
        ),
        &rec(
            "R",
            &[
                field("a", "\"int\""),
                field("b", "\"int\""),
                field("c", "\"int\""),
            ]
            .join(","),
        ),
        &[TypeMismatch, ReaderFieldMissingDefaultValue],
        None,
    ));
    cases
}

#[test]
fn resolution_rules_table() {
    let mut failures = Vec::new();
    for c in table() {
        let writer =
            ParsedSchema::parse(&c.writer).unwrap_or_else(|e| panic!("{}: writer: {e}", c.name));
        let reader =
            ParsedSchema::parse(&c.reader).unwrap_or_else(|e| panic!("{}: reader: {e}", c.name));
        let found: Vec<_> = can_read(&writer, &reader)
            .into_iter()
            .map(|i| i.kind)
            .collect();
        if found != c.expect {
            failures.push(format!(
                "{}: expected {:?}, found {found:?}",
                c.name, c.expect
            ));
        }
        // apache-avro's yes/no agrees where it implements the rule.
        if c.apache_knows {
            let apache_ok = apache_avro::schema_compatibility::SchemaCompatibility::can_read(
                writer.schema(),
                reader.schema(),
            )
            .is_ok();
            if apache_ok != c.expect.is_empty() {
                failures.push(format!(
                    "{}: apache-avro says compatible = {apache_ok}",
                    c.name
                ));
            }
        }
        // What the checker accepts, the decoder resolves.
        if let Some(sample) = &c.sample {
            let codec = AvroCodec::new(AvroSchemas::new());
            let bytes = codec
                .encode_with(&writer, sample)
                .unwrap_or_else(|e| panic!("{}: encode: {e}", c.name));
            if let Err(e) = codec.decode_with(&writer, &reader, &bytes) {
                failures.push(format!("{}: compatible but decoding failed: {e}", c.name));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn incompatibilities_are_located_and_worded() {
    let v1 = ParsedSchema::parse(&rec(
        "R",
        &[
            field("a", "\"int\""),
            field("tags", r#"{"type":"array","items":"string"}"#),
        ]
        .join(","),
    ))
    .unwrap();
    let v2 = ParsedSchema::parse(&rec(
        "R",
        &[
            field("a", "\"int\""),
            field("tags", r#"{"type":"array","items":"int"}"#),
        ]
        .join(","),
    ))
    .unwrap();
    let problems = can_read(&v1, &v2);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "/fields/1/type/items");
    assert_eq!(
        problems[0].message,
        "type of `tags[]` changed: writer type string cannot be read as reader type int"
    );
}

fn versions(texts: &[&str]) -> Vec<(u32, ParsedSchema)> {
    texts
        .iter()
        .zip(1..)
        .map(|(t, v)| (v, ParsedSchema::parse(t).unwrap()))
        .collect()
}

#[test]
fn modes_follow_confluent_semantics() {
    use CompatibilityLevel::*;
    // v1 {a}; v2 {a, b = default}; new {a, b = default, c} (c without default).
    let v1 = rec("R", &field("a", "\"int\""));
    let v2 = rec(
        "R",
        &[
            field("a", "\"int\""),
            r#"{"name":"b","type":"int","default":0}"#.into(),
        ]
        .join(","),
    );
    let add_c = ParsedSchema::parse(&rec(
        "R",
        &[
            field("a", "\"int\""),
            r#"{"name":"b","type":"int","default":0}"#.into(),
            field("c", "\"int\""),
        ]
        .join(","),
    ))
    .unwrap();
    let prev = versions(&[&v1, &v2]);
    // Adding a field without default breaks backward, keeps forward.
    assert!(!check_compatibility(Backward, &add_c, &prev).is_empty());
    assert!(check_compatibility(Forward, &add_c, &prev).is_empty());
    assert!(!check_compatibility(Full, &add_c, &prev).is_empty());
    assert!(check_compatibility(None, &add_c, &prev).is_empty());

    // Removing field `a` (no default in v1 or v2): forward breaks (old readers need it).
    let drop_a =
        ParsedSchema::parse(&rec("R", r#"{"name":"b","type":"int","default":0}"#)).unwrap();
    let forward = check_compatibility(Forward, &drop_a, &prev);
    assert_eq!(forward.len(), 1);
    assert!(
        forward[0].to_string().starts_with(
            "version 2 cannot read data written with the new schema: field `a` removed"
        ),
        "{}",
        forward[0]
    );
    assert!(check_compatibility(Backward, &drop_a, &prev).is_empty());

    // Transitive modes look at every version, plain ones only at the latest.
    // v1 {a: int}, v2 {a: int, b: string = ""}; new {b: string = ""} renames nothing
    // but v1 data lacks... use a type history instead: v1 int, v2 long, new float.
    let history = versions(&[r#""int""#, r#""long""#]);
    let float = ParsedSchema::parse(r#""float""#).unwrap();
    // float reads long and int data: backward ok in both.
    assert!(check_compatibility(BackwardTransitive, &float, &history).is_empty());
    // Forward: long cannot read float; int cannot either.
    assert_eq!(check_compatibility(Forward, &float, &history).len(), 1);
    assert_eq!(
        check_compatibility(ForwardTransitive, &float, &history).len(),
        2
    );
    assert_eq!(
        check_compatibility(FullTransitive, &float, &history).len(),
        2
    );

    // A change only the first version objects to: v1 has an enum symbol the new one lacks.
    let e1 = r#"{"type":"enum","name":"E","symbols":["A","B"]}"#;
    let e2 = r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#;
    let new = ParsedSchema::parse(r#"{"type":"enum","name":"E","symbols":["A","C"]}"#).unwrap();
    let hist = versions(&[e1, e2]);
    // Removing B breaks reading both v1 and v2 data.
    assert_eq!(check_compatibility(Backward, &new, &hist).len(), 1);
    assert_eq!(
        check_compatibility(BackwardTransitive, &new, &hist).len(),
        2
    );
    let first_only = versions(&[
        r#"{"type":"enum","name":"E","symbols":["A","B"]}"#,
        r#"{"type":"enum","name":"E","symbols":["A"]}"#,
    ]);
    let again_a = ParsedSchema::parse(r#"{"type":"enum","name":"E","symbols":["A"]}"#).unwrap();
    assert!(check_compatibility(Backward, &again_a, &first_only).is_empty());
    let transitive = check_compatibility(BackwardTransitive, &again_a, &first_only);
    assert_eq!(transitive.len(), 1);
    assert_eq!(transitive[0].version, Some(1));
}

#[test]
fn level_names_round_trip() {
    for level in CompatibilityLevel::ALL {
        assert_eq!(level.as_str().parse::<CompatibilityLevel>().unwrap(), level);
        assert_eq!(
            level
                .as_str()
                .to_lowercase()
                .parse::<CompatibilityLevel>()
                .unwrap(),
            level
        );
    }
    assert!("SIDEWAYS".parse::<CompatibilityLevel>().is_err());
}
