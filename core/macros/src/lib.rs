#![doc = include_str!("../README.md")]

use std::collections::HashMap;

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{
    Attribute, Data, DeriveInput, Fields, GenericParam, Ident, Lit, LitStr, parse_macro_input,
};

mod command;

/// Derives `orchestrix::Command`: `aggregate_id` returns the field named by
/// `#[command(id = field)]` (on the type, or per variant; the only field when
/// there is one), and `command_type` the variant's name (the struct's name
/// for a struct), so that logs, metrics and a rejection say `PayOrder`, not
/// `OrderCommand`.
#[proc_macro_derive(Command, attributes(command))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    command::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Derives `orchestrix::Event`; see the crate documentation for the
/// `#[event(...)]` attributes.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// The generated `impl orchestrix::Event`, or the compile errors.
fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let model = analyze(input)?;
    Ok(generate(input, &model))
}

// ---------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------

/// What the derive computed from the input.
#[derive(Debug)]
enum Model {
    /// A struct: one event type.
    Struct(Entry),
    /// An enum: one event type per variant, in declaration order.
    Enum(Vec<VariantEntry>),
}

/// An event type and its current schema version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    event_type: String,
    version: u32,
}

/// One enum variant and its event type.
#[derive(Debug)]
struct VariantEntry {
    ident: Ident,
    shape: Shape,
    entry: Entry,
}

/// How a variant's fields are written in a pattern.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Named,
    Unnamed,
    Unit,
}

impl From<&Fields> for Shape {
    fn from(fields: &Fields) -> Self {
        match fields {
            Fields::Named(_) => Self::Named,
            Fields::Unnamed(_) => Self::Unnamed,
            Fields::Unit => Self::Unit,
        }
    }
}

/// Where an `#[event(...)]` attribute sits; decides which keys are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Enum,
    Struct,
    Variant,
}

/// A string attribute value with the span of its literal.
#[derive(Debug)]
struct StrValue {
    value: String,
    span: Span,
}

/// The keys of the `#[event(...)]` attributes of one item.
#[derive(Debug, Default)]
struct Attrs {
    prefix: Option<StrValue>,
    ty: Option<StrValue>,
    name: Option<StrValue>,
    version: Option<u32>,
}

/// Collects several errors into one.
#[derive(Debug, Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(err),
            None => self.0 = Some(err),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }

    /// `result`, with the collected errors put before its own.
    fn finish_with<T>(self, result: syn::Result<T>) -> syn::Result<T> {
        match (self.0, result) {
            (None, result) => result,
            (Some(all), Ok(_)) => Err(all),
            (Some(mut all), Err(err)) => {
                all.combine(err);
                Err(all)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Analysis
// ---------------------------------------------------------------------------

/// Validates the input and computes its event types and versions.
fn analyze(input: &DeriveInput) -> syn::Result<Model> {
    check_generics(input)?;
    match &input.data {
        Data::Struct(data) => {
            let mut errors = Errors::default();
            reject_field_attrs(&data.fields, &mut errors);
            let entry = parse_attrs(&input.attrs, Place::Struct)
                .and_then(|attrs| struct_entry(input, &attrs));
            errors.finish_with(entry).map(Model::Struct)
        }
        Data::Enum(data) => analyze_enum(input, data),
        Data::Union(data) => Err(syn::Error::new(
            data.union_token.span,
            "`#[derive(Event)]` supports structs and enums, not unions",
        )),
    }
}

/// Lifetimes can never satisfy `Event: DeserializeOwned + 'static`; type and
/// const parameters are passed through to the impl.
fn check_generics(input: &DeriveInput) -> syn::Result<()> {
    let mut errors = Errors::default();
    for param in &input.generics.params {
        if let GenericParam::Lifetime(lt) = param {
            errors.push(syn::Error::new(
                lt.span(),
                "`#[derive(Event)]` does not support lifetime parameters: events must be \
                 `'static` and `DeserializeOwned`, so they own their data",
            ));
        }
    }
    errors.finish()
}

fn struct_entry(input: &DeriveInput, attrs: &Attrs) -> syn::Result<Entry> {
    let version = attrs.version.unwrap_or(1);
    let event_type = match (&attrs.ty, &attrs.prefix) {
        (Some(ty), None) => {
            if let Some(name) = &attrs.name {
                return Err(syn::Error::new(
                    name.span,
                    "`name` cannot be combined with `type`: `type` is the full event type",
                ));
            }
            ty.value.clone()
        }
        (None, Some(prefix)) => {
            let name = attrs
                .name
                .as_ref()
                .map_or_else(|| input.ident.unraw().to_string(), |n| n.value.clone());
            format!("{}.{}", prefix.value, name)
        }
        (Some(ty), Some(_)) => {
            return Err(syn::Error::new(
                ty.span,
                "use either `type` (the full event type) or `prefix` (type `{prefix}.{StructName}`), not both",
            ));
        }
        (None, None) => {
            return Err(syn::Error::new(
                input.ident.span(),
                format!(
                    "`#[derive(Event)]` on struct `{}` needs its event type: add \
                     `#[event(type = \"com.example.{}\")]` or `#[event(prefix = \"com.example\")]`",
                    input.ident, input.ident,
                ),
            ));
        }
    };
    Ok(Entry {
        event_type,
        version,
    })
}

fn analyze_enum(input: &DeriveInput, data: &syn::DataEnum) -> syn::Result<Model> {
    let mut errors = Errors::default();
    let (container, container_ok) = match parse_attrs(&input.attrs, Place::Enum) {
        Ok(attrs) => (attrs, true),
        Err(err) => {
            errors.push(err);
            (Attrs::default(), false)
        }
    };

    let prefix = match &container.prefix {
        Some(prefix) => Some(prefix.value.as_str()),
        None if !container_ok => None,
        None => {
            errors.push(syn::Error::new(
                input.ident.span(),
                format!(
                    "`#[derive(Event)]` on enum `{}` needs `#[event(prefix = \"...\")]`: the prefix of \
                     its event types, e.g. `#[event(prefix = \"com.example.bank\")]`",
                    input.ident,
                ),
            ));
            None
        }
    };
    if data.variants.is_empty() {
        errors.push(syn::Error::new(
            input.ident.span(),
            format!(
                "`#[derive(Event)]` on enum `{}` needs at least one variant",
                input.ident
            ),
        ));
    }
    let default_version = container.version.unwrap_or(1);

    let mut entries = Vec::with_capacity(data.variants.len());
    // event type -> variant that first used it
    let mut seen: HashMap<String, Ident> = HashMap::new();
    for variant in &data.variants {
        reject_field_attrs(&variant.fields, &mut errors);
        let attrs = match parse_attrs(&variant.attrs, Place::Variant) {
            Ok(attrs) => attrs,
            Err(err) => {
                errors.push(err);
                continue;
            }
        };
        let version = attrs.version.unwrap_or(default_version);
        let (event_type, span) = match (&attrs.ty, &attrs.name) {
            (Some(ty), None) => (ty.value.clone(), ty.span),
            (None, name) => {
                let Some(prefix) = prefix else { continue };
                match name {
                    Some(name) => (format!("{prefix}.{}", name.value), name.span),
                    None => (
                        format!("{prefix}.{}", variant.ident.unraw()),
                        variant.ident.span(),
                    ),
                }
            }
            (Some(_), Some(name)) => {
                errors.push(syn::Error::new(
                    name.span,
                    "use either `name` (type `{prefix}.{name}`) or `type` (the full event type), not both",
                ));
                continue;
            }
        };
        if let Some(first) = seen.get(&event_type) {
            errors.push(syn::Error::new(
                span,
                format!(
                    "duplicate event type `{event_type}`: variant `{}` already has it",
                    first.unraw()
                ),
            ));
            continue;
        }
        seen.insert(event_type.clone(), variant.ident.clone());
        entries.push(VariantEntry {
            ident: variant.ident.clone(),
            shape: Shape::from(&variant.fields),
            entry: Entry {
                event_type,
                version,
            },
        });
    }
    errors.finish()?;
    Ok(Model::Enum(entries))
}

/// `#[event]` is registered as a helper attribute, so it is accepted on
/// fields by the compiler; it means nothing there.
fn reject_field_attrs(fields: &Fields, errors: &mut Errors) {
    for field in fields {
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("event")) {
            errors.push(syn::Error::new_spanned(
                attr,
                "`#[event(...)]` is not supported on fields",
            ));
        }
    }
}

/// Reads every `#[event(...)]` among `attrs` (other attributes, including
/// `#[serde(...)]`, are ignored).
fn parse_attrs(attrs: &[Attribute], place: Place) -> syn::Result<Attrs> {
    let mut out = Attrs::default();
    let mut errors = Errors::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
        if let Err(err) = attr.parse_nested_meta(|meta| parse_key(&meta, place, &mut out)) {
            errors.push(err);
        }
    }
    errors.finish()?;
    Ok(out)
}

fn parse_key(meta: &ParseNestedMeta<'_>, place: Place, out: &mut Attrs) -> syn::Result<()> {
    let key = meta
        .path
        .get_ident()
        .map(|i| i.unraw().to_string())
        .unwrap_or_default();
    let allowed: &[&str] = match place {
        Place::Enum => &["prefix", "version"],
        Place::Struct => &["type", "prefix", "name", "version"],
        Place::Variant => &["name", "type", "version"],
    };
    if !allowed.contains(&key.as_str()) {
        let what = match place {
            Place::Enum => "an enum",
            Place::Struct => "a struct",
            Place::Variant => "a variant",
        };
        let hint = match (place, key.as_str()) {
            (Place::Enum, "type" | "name") => {
                "; on an enum, set `prefix` on the enum and `name` or `type` on individual variants"
            }
            (Place::Variant, "prefix") => "; `prefix` belongs on the enum",
            _ => "",
        };
        let expected = allowed
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let shown = if key.is_empty() {
            quote_path(&meta.path)
        } else {
            key
        };
        return Err(meta.error(format!(
            "unknown `event` attribute key `{shown}` on {what} (expected one of {expected}){hint}"
        )));
    }
    let duplicate = match key.as_str() {
        "prefix" => out.prefix.is_some(),
        "type" => out.ty.is_some(),
        "name" => out.name.is_some(),
        _ => out.version.is_some(),
    };
    if duplicate {
        return Err(meta.error(format!("duplicate `event` attribute key `{key}`")));
    }
    match key.as_str() {
        "version" => out.version = Some(parse_version(meta)?),
        "prefix" => {
            let lit = parse_str(meta, &key)?;
            out.prefix = Some(check_prefix(&lit)?);
        }
        "type" => {
            let lit = parse_str(meta, &key)?;
            out.ty = Some(check_event_type(&lit, "event type")?);
        }
        _ => {
            let lit = parse_str(meta, &key)?;
            out.name = Some(check_event_type(&lit, "event name")?);
        }
    }
    Ok(())
}

fn quote_path(path: &syn::Path) -> String {
    quote!(#path).to_string().replace(' ', "")
}

fn parse_str(meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<LitStr> {
    let value = meta.value()?;
    let lit: Lit = value.parse()?;
    match lit {
        Lit::Str(s) => Ok(s),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{key}` expects a string literal, e.g. `{key} = \"...\"`"),
        )),
    }
}

fn parse_version(meta: &ParseNestedMeta<'_>) -> syn::Result<u32> {
    let value = meta.value()?;
    let lit: Lit = value.parse()?;
    let Lit::Int(int) = lit else {
        return Err(syn::Error::new(
            lit.span(),
            "`version` expects a positive integer literal, e.g. `version = 2`",
        ));
    };
    if !matches!(int.suffix(), "" | "u32") {
        return Err(syn::Error::new(
            int.span(),
            "`version` is a `u32`; drop the literal suffix",
        ));
    }
    let version: u32 = int.base10_parse().map_err(|_| {
        syn::Error::new(
            int.span(),
            "`version` must be a positive integer that fits in a `u32`",
        )
    })?;
    if version == 0 {
        return Err(syn::Error::new(
            int.span(),
            "`version` starts at 1; 0 is not a schema version",
        ));
    }
    Ok(version)
}

/// Non-empty, no whitespace or control characters.
fn check_event_type(lit: &LitStr, what: &str) -> syn::Result<StrValue> {
    let value = lit.value();
    if value.is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("the {what} must not be empty"),
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "the {what} `{}` must not contain whitespace",
                value.escape_debug()
            ),
        ));
    }
    Ok(StrValue {
        value,
        span: lit.span(),
    })
}

fn check_prefix(lit: &LitStr) -> syn::Result<StrValue> {
    let checked = check_event_type(lit, "event type prefix")?;
    if checked.value.starts_with('.') || checked.value.ends_with('.') {
        return Err(syn::Error::new(
            lit.span(),
            "the event type prefix must not start or end with `.` (the derive adds the `.` before the name)",
        ));
    }
    Ok(checked)
}

// ---------------------------------------------------------------------------
// Code generation
// ---------------------------------------------------------------------------

fn generate(input: &DeriveInput, model: &Model) -> TokenStream2 {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let value = quote!(::orchestrix::__private::serde_json::Value);

    let infos = match model {
        Model::Struct(entry) => vec![entry],
        Model::Enum(variants) => variants.iter().map(|v| &v.entry).collect(),
    };
    let infos = infos.iter().map(
        |Entry {
             event_type,
             version,
         }| {
            quote!(::orchestrix::EventTypeInfo { event_type: #event_type, version: #version })
        },
    );

    let body = match model {
        Model::Struct(Entry {
            event_type,
            version,
        }) => quote! {
            fn event_type(&self) -> &'static str {
                #event_type
            }

            fn schema_version(&self) -> u32 {
                #version
            }

            fn event_types() -> &'static [::orchestrix::EventTypeInfo] {
                const EVENT_TYPES: &[::orchestrix::EventTypeInfo] = &[#(#infos),*];
                EVENT_TYPES
            }

            fn to_payload(&self) -> ::orchestrix::Result<#value> {
                ::orchestrix::__private::serde_json::to_value(self).map_err(|err| {
                    ::orchestrix::__private::encode_error(::std::format!("event `{}`", #event_type), err)
                })
            }

            fn from_payload(event_type: &str, payload: #value) -> ::orchestrix::Result<Self> {
                if event_type == #event_type {
                    ::orchestrix::__private::serde_json::from_value(payload).map_err(|err| {
                        ::orchestrix::__private::decode_error(::std::format!("event `{}`", event_type), err)
                    })
                } else {
                    ::core::result::Result::Err(::orchestrix::__private::unknown::<Self>(event_type))
                }
            }
        },
        Model::Enum(variants) => {
            let patterns: Vec<TokenStream2> = variants
                .iter()
                .map(|v| {
                    let ident = &v.ident;
                    match v.shape {
                        Shape::Named => quote!(Self::#ident { .. }),
                        Shape::Unnamed => quote!(Self::#ident(..)),
                        Shape::Unit => quote!(Self::#ident),
                    }
                })
                .collect();
            let types: Vec<&str> = variants
                .iter()
                .map(|v| v.entry.event_type.as_str())
                .collect();
            let versions = variants.iter().map(|v| v.entry.version);
            let serde_names = variants.iter().map(|v| v.ident.unraw().to_string());
            quote! {
                fn event_type(&self) -> &'static str {
                    match self {
                        #(#patterns => #types,)*
                    }
                }

                fn schema_version(&self) -> u32 {
                    match self {
                        #(#patterns => #versions,)*
                    }
                }

                fn event_types() -> &'static [::orchestrix::EventTypeInfo] {
                    const EVENT_TYPES: &[::orchestrix::EventTypeInfo] = &[#(#infos),*];
                    EVENT_TYPES
                }

                fn to_payload(&self) -> ::orchestrix::Result<#value> {
                    let event_type = <Self as ::orchestrix::Event>::event_type(self);
                    let tagged = ::orchestrix::__private::serde_json::to_value(self).map_err(|err| {
                        ::orchestrix::__private::encode_error(::std::format!("event `{}`", event_type), err)
                    })?;
                    ::orchestrix::__private::untag(event_type, tagged)
                }

                fn from_payload(event_type: &str, payload: #value) -> ::orchestrix::Result<Self> {
                    match event_type {
                        #(#types => ::orchestrix::__private::retag::<Self>(event_type, #serde_names, payload),)*
                        other => ::core::result::Result::Err(::orchestrix::__private::unknown::<Self>(other)),
                    }
                }
            }
        }
    };

    quote! {
        #[automatically_derived]
        impl #impl_generics ::orchestrix::Event for #ident #ty_generics #where_clause {
            #body
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    /// The `(event type, version)` table of `input`, or the error messages.
    fn table(input: &DeriveInput) -> Result<Vec<(String, u32)>, String> {
        match analyze(input) {
            Ok(Model::Struct(e)) => Ok(vec![(e.event_type, e.version)]),
            Ok(Model::Enum(vs)) => Ok(vs
                .into_iter()
                .map(|v| (v.entry.event_type, v.entry.version))
                .collect()),
            Err(err) => Err(err
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")),
        }
    }

    fn ok(input: &DeriveInput) -> Vec<(String, u32)> {
        table(input).unwrap_or_else(|e| panic!("unexpected error: {e}"))
    }

    fn err(input: &DeriveInput) -> String {
        match table(input) {
            Ok(t) => panic!("expected an error, got {t:?}"),
            Err(e) => e,
        }
    }

    fn row(t: &str, v: u32) -> (String, u32) {
        (t.to_owned(), v)
    }

    #[test]
    fn enum_defaults() {
        let input: DeriveInput = parse_quote! {
            #[derive(Serialize, Deserialize)]
            #[event(prefix = "com.acme.bank")]
            #[serde(deny_unknown_fields)]
            enum AccountEvent {
                Opened { owner: String },
                Deposited(u64),
                Closed,
            }
        };
        assert_eq!(
            ok(&input),
            vec![
                row("com.acme.bank.Opened", 1),
                row("com.acme.bank.Deposited", 1),
                row("com.acme.bank.Closed", 1)
            ]
        );
    }

    #[test]
    fn enum_name_and_type_overrides() {
        let input: DeriveInput = parse_quote! {
            #[event(prefix = "com.acme.bank")]
            enum AccountEvent {
                #[event(name = "MoneyDeposited")]
                Deposited { amount: u64 },
                #[event(type = "org.legacy.AccountClosed")]
                Closed,
                r#Opened,
            }
        };
        assert_eq!(
            ok(&input),
            vec![
                row("com.acme.bank.MoneyDeposited", 1),
                row("org.legacy.AccountClosed", 1),
                row("com.acme.bank.Opened", 1)
            ]
        );
    }

    #[test]
    fn enum_versions() {
        let input: DeriveInput = parse_quote! {
            #[event(prefix = "p", version = 3)]
            enum E {
                A,
                #[event(version = 7)]
                B,
                #[event(name = "Cee", version = 2)]
                C(u8),
                #[event(type = "x.D")]
                #[event(version = 4)]
                D { x: u8 },
            }
        };
        assert_eq!(
            ok(&input),
            vec![row("p.A", 3), row("p.B", 7), row("p.Cee", 2), row("x.D", 4)]
        );
    }

    #[test]
    fn enum_duplicate_event_types() {
        let input: DeriveInput = parse_quote! {
            #[event(prefix = "p")]
            enum E {
                A,
                #[event(name = "A")]
                B,
                #[event(type = "p.A")]
                C,
            }
        };
        let e = err(&input);
        assert!(
            e.contains("duplicate event type `p.A`: variant `A` already has it"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 2, "{e}");
    }

    #[test]
    fn enum_missing_prefix() {
        let input: DeriveInput = parse_quote! {
            #[event(version = 2)]
            enum E { A, B }
        };
        let e = err(&input);
        assert!(e.contains("needs `#[event(prefix = \"...\")]`"), "{e}");

        let input: DeriveInput = parse_quote! { enum E { A } };
        assert!(err(&input).contains("needs `#[event(prefix"));
    }

    #[test]
    fn enum_misplaced_keys() {
        let input: DeriveInput = parse_quote! {
            #[event(type = "a.B")]
            enum E { A }
        };
        let e = err(&input);
        assert!(
            e.contains("unknown `event` attribute key `type` on an enum"),
            "{e}"
        );

        let input: DeriveInput = parse_quote! {
            #[event(prefix = "p")]
            enum E { #[event(prefix = "q")] A }
        };
        assert!(err(&input).contains("`prefix` belongs on the enum"));

        let input: DeriveInput = parse_quote! {
            #[event(prefix = "p")]
            enum E { #[event(name = "X", type = "q.X")] A }
        };
        assert!(err(&input).contains("not both"));
    }

    #[test]
    fn enum_empty() {
        let input: DeriveInput = parse_quote! {
            #[event(prefix = "p")]
            enum E {}
        };
        assert!(err(&input).contains("at least one variant"));
    }

    #[test]
    fn struct_with_type() {
        let input: DeriveInput = parse_quote! {
            #[derive(Serialize)]
            #[event(type = "com.acme.Thing", version = 5)]
            struct Whatever { a: u8 }
        };
        assert_eq!(ok(&input), vec![row("com.acme.Thing", 5)]);
    }

    #[test]
    fn struct_with_prefix() {
        let input: DeriveInput = parse_quote! {
            #[event(prefix = "com.acme")]
            struct Thing(u8);
        };
        assert_eq!(ok(&input), vec![row("com.acme.Thing", 1)]);

        let input: DeriveInput = parse_quote! {
            #[event(prefix = "com.acme", name = "Other")]
            struct Thing;
        };
        assert_eq!(ok(&input), vec![row("com.acme.Other", 1)]);
    }

    #[test]
    fn struct_errors() {
        let input: DeriveInput = parse_quote! { struct S { a: u8 } };
        assert!(err(&input).contains("needs its event type"));

        let input: DeriveInput = parse_quote! {
            #[event(type = "a.S", prefix = "a")]
            struct S;
        };
        assert!(err(&input).contains("not both"));

        let input: DeriveInput = parse_quote! {
            #[event(type = "a.S", name = "S")]
            struct S;
        };
        assert!(err(&input).contains("`name` cannot be combined with `type`"));

        let input: DeriveInput = parse_quote! {
            #[event(type = "a.S")]
            struct S { #[event(version = 2)] a: u8 }
        };
        assert!(err(&input).contains("not supported on fields"));
    }

    #[test]
    fn version_errors() {
        let cases: Vec<(DeriveInput, &str)> = vec![
            (
                parse_quote! { #[event(type = "a.S", version = 0)] struct S; },
                "starts at 1",
            ),
            (
                parse_quote! { #[event(type = "a.S", version = "2")] struct S; },
                "positive integer literal",
            ),
            (
                parse_quote! { #[event(type = "a.S", version = 1.5)] struct S; },
                "positive integer literal",
            ),
            (
                parse_quote! { #[event(type = "a.S", version = -1)] struct S; },
                "positive integer",
            ),
            (
                parse_quote! { #[event(type = "a.S", version = 4294967296)] struct S; },
                "fits in a `u32`",
            ),
            (
                parse_quote! { #[event(type = "a.S", version = 2u8)] struct S; },
                "suffix",
            ),
            (
                parse_quote! { #[event(type = "a.S", version)] struct S; },
                "expected `=`",
            ),
            (
                parse_quote! { #[event(prefix = "p")] enum E { #[event(version = 0)] A } },
                "starts at 1",
            ),
        ];
        for (input, expected) in cases {
            let e = err(&input);
            assert!(e.contains(expected), "{expected:?} not in {e:?}");
        }
        assert_eq!(
            ok(&parse_quote! { #[event(type = "a.S", version = 9u32)] struct S; }),
            vec![row("a.S", 9)]
        );
    }

    #[test]
    fn string_errors() {
        let cases: Vec<(DeriveInput, &str)> = vec![
            (
                parse_quote! { #[event(type = "")] struct S; },
                "must not be empty",
            ),
            (
                parse_quote! { #[event(type = "a. S")] struct S; },
                "must not contain whitespace",
            ),
            (
                parse_quote! { #[event(prefix = "")] struct S; },
                "must not be empty",
            ),
            (
                parse_quote! { #[event(prefix = "a.")] struct S; },
                "must not start or end with `.`",
            ),
            (
                parse_quote! { #[event(prefix = "a\tb")] enum E { A } },
                "must not contain whitespace",
            ),
            (
                parse_quote! { #[event(prefix = "a")] enum E { #[event(name = "")] A } },
                "must not be empty",
            ),
            (
                parse_quote! { #[event(prefix = "a")] enum E { #[event(name = "x y")] A } },
                "whitespace",
            ),
            (
                parse_quote! { #[event(prefix = "a")] enum E { #[event(type = " ")] A } },
                "whitespace",
            ),
            (
                parse_quote! { #[event(type = 5)] struct S; },
                "`type` expects a string literal",
            ),
        ];
        for (input, expected) in cases {
            let e = err(&input);
            assert!(e.contains(expected), "{expected:?} not in {e:?}");
        }
    }

    #[test]
    fn attribute_syntax_errors() {
        let cases: Vec<(DeriveInput, &str)> = vec![
            (
                parse_quote! { #[event(typ = "a.S")] struct S; },
                "unknown `event` attribute key `typ` on a struct",
            ),
            (
                parse_quote! { #[event(a::b = "x")] struct S; },
                "unknown `event` attribute key `a::b`",
            ),
            (
                parse_quote! { #[event(type = "a.S", type = "a.T")] struct S; },
                "duplicate `event` attribute key `type`",
            ),
            (
                parse_quote! { #[event(type = "a.S")] #[event(version = 1)] #[event(version = 2)] struct S; },
                "duplicate",
            ),
            (
                parse_quote! { #[event] struct S; },
                "expected attribute arguments in parentheses",
            ),
        ];
        for (input, expected) in cases {
            let e = err(&input);
            assert!(e.contains(expected), "{expected:?} not in {e:?}");
        }
    }

    #[test]
    fn several_errors_are_reported_together() {
        let input: DeriveInput = parse_quote! {
            #[event(prefix = "p")]
            enum E {
                #[event(version = 0)]
                A,
                #[event(bogus = 1)]
                B,
                C,
                #[event(name = "C")]
                D,
            }
        };
        let e = err(&input);
        assert_eq!(e.lines().count(), 3, "{e}");
    }

    #[test]
    fn generics() {
        let input: DeriveInput = parse_quote! {
            #[event(prefix = "p")]
            enum E<'a> { A(&'a str) }
        };
        assert!(err(&input).contains("lifetime parameters"));

        let input: DeriveInput = parse_quote! {
            #[event(prefix = "p")]
            enum E<T: Clone> where T: Send { A(T) }
        };
        let tokens = expand(&input)
            .expect("type parameters are passed through")
            .to_string();
        assert!(
            tokens.contains("impl < T : Clone > :: orchestrix :: Event for E < T > where T : Send"),
            "{tokens}"
        );
    }

    #[test]
    fn unions_are_rejected() {
        let input: DeriveInput = parse_quote! {
            #[event(type = "a.U")]
            union U { a: u8 }
        };
        assert!(err(&input).contains("not unions"));
    }

    #[test]
    fn generated_code_names_only_orchestrix_paths() {
        let input: DeriveInput = parse_quote! {
            #[event(prefix = "p")]
            enum E { A { x: u8 }, B(u8), C }
        };
        let tokens = expand(&input).unwrap().to_string();
        assert!(tokens.contains(r#"Self :: A { .. } => "p.A""#), "{tokens}");
        assert!(tokens.contains(r#"Self :: B (..) => "p.B""#), "{tokens}");
        assert!(tokens.contains(r#"Self :: C => "p.C""#), "{tokens}");
        assert!(tokens.contains(r#""p.B" => :: orchestrix :: __private :: retag :: < Self > (event_type , "B" , payload)"#));
        // serde_json is only reached through `::orchestrix::__private`.
        assert_eq!(
            tokens.matches("serde_json").count(),
            tokens
                .matches(":: orchestrix :: __private :: serde_json")
                .count(),
            "{tokens}"
        );
        assert!(
            tokens.contains(":: orchestrix :: __private :: serde_json :: to_value (self)"),
            "{tokens}"
        );
    }
}
