//! Procedural macros for `cyclone-sdk`. Use them as `cyclone_sdk::handler`.

use proc_macro::TokenStream;
use quote::quote;
use syn::{ItemFn, parse_macro_input};

/// Exports an `async fn(Request) -> impl IntoResponse` as the component's
/// `wasi:http/incoming-handler`. See `cyclone_sdk::handler` for the guide.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[cyclone_sdk::handler] takes no arguments",
        )
        .to_compile_error()
        .into();
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
    quote! {
        #function

        const _: () = {
            struct CycloneHandler;

            impl ::cyclone_sdk::__private::IncomingHandler for CycloneHandler {
                fn handle(
                    request: ::cyclone_sdk::__private::IncomingRequest,
                    response_out: ::cyclone_sdk::__private::ResponseOutparam,
                ) {
                    ::cyclone_sdk::__private::serve(request, response_out, #name)
                }
            }

            ::cyclone_sdk::__private::wasip2::http::proxy::export!(
                CycloneHandler with_types_in ::cyclone_sdk::__private::wasip2
            );
        };
    }
    .into()
}
