//! `#[derive(Command)]`: writes a command's streams and composes its state
//! from stream views, so a command is a struct of annotated fields plus an
//! `impl Decide`. Re-exported as `eventcore::Command`; see the `eventcore`
//! crate's `Decide` trait for a full example.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{parse_macro_input, Data, DeriveInput, Fields, GenericArgument, Ident, PathArguments, Type};

/// Derives `eventcore::Command` for a struct whose `#[stream(View)]` fields
/// name the streams it reads and the view each is folded into.
///
/// A field is either a `StreamId` (one stream) or a `Vec<StreamId>` (several
/// streams of one view). The derive also writes `{Name}State<'a>`, a struct
/// with a reference to each field's view (a `Vec` of references for a
/// `Vec<StreamId>` field) plus `views`, every view read (for streams found
/// at run time with `Emit::read`). The decision itself is an `impl Decide`.
#[proc_macro_derive(Command, attributes(stream))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

enum Shape {
    One,
    Many,
}

struct StreamField {
    name: Ident,
    view: syn::Path,
    shape: Shape,
    span: Span,
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "#[derive(Command)] does not support generic commands; implement eventcore::Command by hand",
        ));
    }
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => &fields.named,
            _ => {
                return Err(syn::Error::new(
                    name.span(),
                    "#[derive(Command)] needs a struct with named fields, e.g. `struct Transfer { #[stream(Account)] from: StreamId }`",
                ))
            }
        },
        _ => {
            return Err(syn::Error::new(
                name.span(),
                "#[derive(Command)] needs a struct with named fields, e.g. `struct Transfer { #[stream(Account)] from: StreamId }`",
            ))
        }
    };
    let mut streams = Vec::new();
    for field in fields {
        let Some(attr) = field.attrs.iter().find(|a| a.path().is_ident("stream")) else {
            continue;
        };
        let view: syn::Path = attr.parse_args().map_err(|_| {
            syn::Error::new(
                attr.span(),
                "name the view that folds this stream: #[stream(ViewType)], e.g. #[stream(Account)]",
            )
        })?;
        let Some(field_name) = field.ident.clone() else {
            continue;
        };
        if field_name == "views" {
            return Err(syn::Error::new(
                field_name.span(),
                "a #[stream] field cannot be called `views`: the generated state uses that name for every view read",
            ));
        }
        let shape = shape_of(&field.ty).ok_or_else(|| {
            syn::Error::new(
                field.ty.span(),
                "a #[stream(View)] field must be a `StreamId` or a `Vec<StreamId>`",
            )
        })?;
        streams.push(StreamField {
            name: field_name,
            view,
            shape,
            span: field.span(),
        });
    }
    if streams.is_empty() {
        return Err(syn::Error::new(
            name.span(),
            "#[derive(Command)] needs at least one stream: mark a `StreamId` field with #[stream(ViewType)]",
        ));
    }

    let vis = &input.vis;
    let state_name = format_ident!("{}State", name);
    let state_doc =
        format!("The views `{name}` decides on: one per `#[stream]` field (written by `#[derive(Command)]`).");

    let state_fields = streams.iter().map(|f| {
        let (field, view) = (&f.name, &f.view);
        let doc = format!("The `{}` view of `{field}`.", quote!(#view));
        match f.shape {
            Shape::One => quote_spanned! {f.span=> #[doc = #doc] pub #field: &'a #view },
            Shape::Many => quote_spanned! {f.span=> #[doc = #doc] pub #field: ::std::vec::Vec<&'a #view> },
        }
    });

    let push_streams = streams.iter().map(|f| {
        let field = &f.name;
        match f.shape {
            Shape::One => quote! { streams.push(::std::clone::Clone::clone(&self.#field)); },
            Shape::Many => quote! { streams.extend(self.#field.iter().cloned()); },
        }
    });

    let view_of = streams.iter().map(|f| {
        let (field, view) = (&f.name, &f.view);
        let kind = quote_spanned! {f.span=> ::eventcore::ViewKind::of::<#view>() };
        match f.shape {
            Shape::One => quote! { if &self.#field == stream { return ::std::option::Option::Some(#kind); } },
            Shape::Many => quote! { if self.#field.contains(stream) { return ::std::option::Option::Some(#kind); } },
        }
    });

    let compose = streams.iter().map(|f| {
        let (field, view) = (&f.name, &f.view);
        let missing = quote! {
            ::eventcore::Emit::new(decision).missing_view(stream, ::eventcore::ViewKind::of::<#view>());
            return ::std::result::Result::Ok(());
        };
        match f.shape {
            Shape::One => quote! {
                let #field = {
                    let stream = &self.#field;
                    match views.get::<#view>(stream) {
                        ::std::option::Option::Some(view) => view,
                        ::std::option::Option::None => { #missing }
                    }
                };
            },
            Shape::Many => quote! {
                let #field = {
                    let mut out = ::std::vec::Vec::with_capacity(self.#field.len());
                    for stream in &self.#field {
                        match views.get::<#view>(stream) {
                            ::std::option::Option::Some(view) => out.push(view),
                            ::std::option::Option::None => { #missing }
                        }
                    }
                    out
                };
            },
        }
    });
    let field_names = streams.iter().map(|f| &f.name);

    Ok(quote! {
        #[doc = #state_doc]
        #vis struct #state_name<'a> {
            #(#state_fields,)*
            /// Every view read, including streams discovered with `Emit::read`.
            pub views: &'a ::eventcore::Views,
        }

        impl ::eventcore::ComposeViews for #name {
            type State<'a> = #state_name<'a> where Self: 'a;
        }

        impl ::eventcore::Command for #name {
            type Event = ::eventcore::AnyEvent;
            type State = ::eventcore::Views;
            type Error = <Self as ::eventcore::Decide>::Error;

            fn streams(&self) -> ::std::vec::Vec<::eventcore::StreamId> {
                let mut streams = ::std::vec::Vec::new();
                #(#push_streams)*
                streams
            }

            fn view_of(&self, stream: &::eventcore::StreamId) -> ::std::option::Option<::eventcore::ViewKind> {
                #(#view_of)*
                ::std::option::Option::None
            }

            fn views_mut(state: &mut ::eventcore::Views) -> ::std::option::Option<&mut ::eventcore::Views> {
                ::std::option::Option::Some(state)
            }

            fn apply(&self, _: &mut ::eventcore::Views, _: &::eventcore::StreamId, _: &::eventcore::AnyEvent) {}

            fn decide(
                &self,
                views: &::eventcore::Views,
                decision: &mut ::eventcore::Decision<::eventcore::AnyEvent>,
            ) -> ::std::result::Result<(), Self::Error> {
                #(#compose)*
                let state = #state_name { #(#field_names,)* views };
                <Self as ::eventcore::Decide>::decide(self, &state, &mut ::eventcore::Emit::new(decision))
            }
        }
    })
}

/// `StreamId` or `Vec<StreamId>` (by the last path segment, so qualified
/// paths work too).
fn shape_of(ty: &Type) -> Option<Shape> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident == "StreamId" && last.arguments.is_empty() {
        return Some(Shape::One);
    }
    if last.ident == "Vec" {
        if let PathArguments::AngleBracketed(args) = &last.arguments {
            if let Some(GenericArgument::Type(Type::Path(inner))) = args.args.first() {
                let inner = inner.path.segments.last()?;
                if inner.ident == "StreamId" && inner.arguments.is_empty() {
                    return Some(Shape::Many);
                }
            }
        }
    }
    None
}
