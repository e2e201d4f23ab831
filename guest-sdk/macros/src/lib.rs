//! Procedural macros for `cyclone-sdk`. Use them as `cyclone_sdk::handler`.

use proc_macro::TokenStream;
use quote::quote;
use syn::{ItemFn, parse_macro_input};

/// Exports an `async fn(Request) -> impl IntoResponse` as the component's
/// `wasi:http/incoming-handler`. See `cyclone_sdk::handler` for the guide.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    if let Some(error) = refuse_arguments(&attr, "handler") {
        return error;
    }
    let function = parse_macro_input!(item as ItemFn);
    if function.sig.asyncness.is_none() {
        return syn::Error::new_spanned(
            function.sig.fn_token,
            "#[cyclone_sdk::handler] needs an `async fn`",
        )
        .to_compile_error()
        .into();
    }
    let name = &function.sig.ident;
    let export = incoming_handler(quote!(#name));
    quote! {
        #function

        const _: () = {
            struct CycloneHandler;
            #export
        };
    }
    .into()
}

/// The HTTP export of the type `CycloneHandler` (`wasi:http` 0.2 or 0.3,
/// as the SDK is built), serving each request with `handler`, an
/// `FnOnce(Request)` returning a future of something that implements
/// `IntoResponse`.
fn incoming_handler(handler: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    quote! {
        ::cyclone_sdk::__private::export_http!(CycloneHandler, #handler);
    }
}

/// Exports a `fn() -> Application` as the component's HTTP handler
/// (`wasi:http/incoming-handler`) and websocket handler
/// (`cyclone:platform/websocket-handler`). The function runs once per request
/// or session, in that request's fresh instance.
///
/// ```text
/// #[cyclone_sdk::app]
/// fn app() -> Application {
///     Application::new()
///         .get("/", home)
///         .websocket("/socket", Echo)
/// }
/// ```
///
/// Use it instead of `#[handler]` for an application with websocket routes.
#[proc_macro_attribute]
pub fn app(attr: TokenStream, item: TokenStream) -> TokenStream {
    if let Some(error) = refuse_arguments(&attr, "app") {
        return error;
    }
    let function = parse_macro_input!(item as ItemFn);
    if function.sig.asyncness.is_some() || !function.sig.inputs.is_empty() {
        return syn::Error::new_spanned(
            &function.sig,
            "#[cyclone_sdk::app] needs a plain `fn() -> Application`",
        )
        .to_compile_error()
        .into();
    }
    let name = &function.sig.ident;
    let export = incoming_handler(quote!(|request| #name().handle(request)));
    quote! {
        #function

        const _: () = {
            struct CycloneHandler;
            #export
            ::cyclone_sdk::__private::export_websocket!(CycloneHandler, #name);
        };
    }
    .into()
}

/// A compile error when an attribute that takes no arguments got some.
fn refuse_arguments(attr: &TokenStream, name: &str) -> Option<TokenStream> {
    (!attr.is_empty()).then(|| {
        syn::Error::new(
            proc_macro2::Span::call_site(),
            format!("#[cyclone_sdk::{name}] takes no arguments"),
        )
        .to_compile_error()
        .into()
    })
}

/// The verbs a `Handler` may implement, as `(method name, http::Method constant)`.
const VERBS: &[(&str, &str)] = &[
    ("get", "GET"),
    ("head", "HEAD"),
    ("post", "POST"),
    ("put", "PUT"),
    ("patch", "PATCH"),
    ("delete", "DELETE"),
    ("options", "OPTIONS"),
];

/// Marks an `impl Handler for T` block: writes `allowed_methods` from the
/// verb methods the block defines, so the application answers other verbs
/// with 405 and a correct `Allow` header.
#[proc_macro_attribute]
pub fn handler_impl(attr: TokenStream, item: TokenStream) -> TokenStream {
    if let Some(error) = refuse_arguments(&attr, "handler_impl") {
        return error;
    }
    let mut block = parse_macro_input!(item as syn::ItemImpl);
    let defined: Vec<String> = block
        .items
        .iter()
        .filter_map(|item| match item {
            syn::ImplItem::Fn(f) => Some(f.sig.ident.to_string()),
            _ => None,
        })
        .collect();
    if defined.iter().any(|name| name == "allowed_methods") {
        return syn::Error::new_spanned(
            &block.self_ty,
            "#[cyclone_sdk::handler_impl] writes `allowed_methods`; remove it from the impl",
        )
        .to_compile_error()
        .into();
    }
    let methods = VERBS
        .iter()
        .filter(|(name, _)| defined.iter().any(|d| d == name))
        .map(|(_, constant)| {
            let constant = syn::Ident::new(constant, proc_macro2::Span::call_site());
            quote! { ::cyclone_sdk::Method::#constant }
        });
    block.items.push(syn::parse_quote! {
        fn allowed_methods(&self) -> &'static [::cyclone_sdk::Method] {
            const ALLOWED: &[::cyclone_sdk::Method] = &[#(#methods),*];
            ALLOWED
        }
    });
    quote! { #block }.into()
}
