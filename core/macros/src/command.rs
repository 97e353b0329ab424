//! `#[derive(Command)]`: the aggregate id from a named field, and the
//! variant's name as the command type (used in logs, metrics and the
//! "command `PayOrder` rejected" error).

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, Member};

/// The generated `impl orchestrix::Command`, or the compile errors.
pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let default_id = id_attr(&input.attrs)?;
    let (id_body, type_body, all_types) = match &input.data {
        Data::Struct(data) => {
            let member = member_for(&data.fields, default_id.as_ref(), input.span())?;
            let type_name = name.to_string();
            (
                quote!(::std::string::ToString::to_string(&self.#member)),
                quote!(#type_name),
                vec![type_name],
            )
        }
        Data::Enum(data) => {
            let mut ids = Vec::new();
            let mut types = Vec::new();
            let mut names = Vec::new();
            for variant in &data.variants {
                let ident = &variant.ident;
                let own = id_attr(&variant.attrs)?;
                let member = member_for(
                    &variant.fields,
                    own.as_ref().or(default_id.as_ref()),
                    variant.span(),
                )?;
                let type_name = ident.to_string();
                let pattern = match (&variant.fields, &member) {
                    (Fields::Named(_), Member::Named(field)) => {
                        quote!(Self::#ident { #field: __id, .. })
                    }
                    (Fields::Unnamed(fields), Member::Unnamed(index)) => {
                        let slots = (0..fields.unnamed.len()).map(|i| {
                            if i == index.index as usize {
                                quote!(__id)
                            } else {
                                quote!(_)
                            }
                        });
                        quote!(Self::#ident( #(#slots),* ))
                    }
                    _ => {
                        return Err(syn::Error::new(
                            variant.span(),
                            "`#[command(id = ...)]` names a field this variant does not have",
                        ));
                    }
                };
                ids.push(quote!(#pattern => ::std::string::ToString::to_string(__id)));
                let any = match &variant.fields {
                    Fields::Named(_) => quote!(Self::#ident { .. }),
                    Fields::Unnamed(_) => quote!(Self::#ident(..)),
                    Fields::Unit => quote!(Self::#ident),
                };
                types.push(quote!(#any => #type_name));
                names.push(type_name);
            }
            if ids.is_empty() {
                return Err(syn::Error::new(
                    input.span(),
                    "`#[derive(Command)]` needs at least one variant",
                ));
            }
            (
                quote!(match self { #(#ids,)* }),
                quote!(match self { #(#types,)* }),
                names,
            )
        }
        Data::Union(_) => {
            return Err(syn::Error::new(
                input.span(),
                "`#[derive(Command)]` works on structs and enums",
            ));
        }
    };
    Ok(quote! {
        impl #impl_generics ::orchestrix::Command for #name #ty_generics #where_clause {
            fn aggregate_id(&self) -> ::std::string::String {
                #id_body
            }
            fn command_type(&self) -> &'static str {
                #type_body
            }
            fn command_types() -> ::std::vec::Vec<&'static str> {
                ::std::vec![#(#all_types),*]
            }
        }
    })
}

/// The `id` of a `#[command(id = field)]` attribute, if any.
fn id_attr(attrs: &[Attribute]) -> syn::Result<Option<Member>> {
    let mut id = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("command")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("id") {
                let value = meta.value()?;
                let member: Member = if value.peek(syn::LitInt) {
                    let lit: syn::LitInt = value.parse()?;
                    Member::Unnamed(syn::Index {
                        index: lit.base10_parse()?,
                        span: lit.span(),
                    })
                } else {
                    Member::Named(value.parse::<Ident>()?)
                };
                id = Some(member);
                Ok(())
            } else {
                Err(meta.error("unknown `#[command(...)]` key (known: id)"))
            }
        })?;
    }
    Ok(id)
}

/// The field holding the aggregate id: the one named by the attribute, or
/// the only field.
fn member_for(
    fields: &Fields,
    named: Option<&Member>,
    span: proc_macro2::Span,
) -> syn::Result<Member> {
    if let Some(member) = named {
        return Ok(member.clone());
    }
    let mut iter = fields.iter();
    match (iter.next(), iter.next()) {
        (Some(field), None) => Ok(field.ident.clone().map_or(
            Member::Unnamed(syn::Index {
                index: 0,
                span: field.span(),
            }),
            Member::Named,
        )),
        _ => Err(syn::Error::new(
            span,
            "name the field holding the aggregate id: `#[command(id = field)]` (on the type, or on a variant)",
        )),
    }
}
