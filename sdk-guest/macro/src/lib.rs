//! The attribute macros of `switchyard-sdk`; use them through that crate.
//!
//! `#[call_handler]` keeps the annotated function as written and adds,
//! next to it, a unit struct implementing the `handler` interface's `Guest`
//! trait by calling the function, plus the `wit-bindgen` export of that
//! struct. The function's signature is checked by coercing it to a typed fn
//! pointer spanned at the signature, so a mismatch is one error there rather
//! than several inside generated code.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Error, ItemFn, parse_macro_input};

/// Exports a function as the component's call handler.
///
/// The function takes the event's context and the event by value and
/// returns the next plan:
///
/// ```ignore
/// use switchyard_sdk::prelude::*;
///
/// #[call_handler]
/// fn handle(ctx: Context, event: Event) -> Result<Plan, HandlerError> {
///     Ok(Plan::new().say("Hello").hangup())
/// }
/// ```
///
/// Any function name works, and the function stays callable from tests.
/// Use the attribute once per crate: a component has one handler. Another
/// signature, `async`, generics or an unknown argument are compile errors
/// pointing at the mistake.
///
/// `#[call_handler(notices = false)]` says the handler takes no
/// informational events (`Event::StatusChanged`, `Event::Hangup`): the
/// runtime then does not run it for them, which saves one instantiation
/// per call. It is written into the component (a `switchyard-handler`
/// custom section), so `switchyard check` shows it.
#[proc_macro_attribute]
pub fn call_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    expand_call_handler(attr.into(), func)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

/// `notices = true|false`, the one argument `#[call_handler]` takes.
fn notices(attr: TokenStream2) -> syn::Result<bool> {
    if attr.is_empty() {
        return Ok(true);
    }
    let usage = "`#[call_handler]` takes one optional argument: `notices = false` \
                 (the handler takes no status-changed or hangup events)";
    let arg: syn::MetaNameValue =
        syn::parse2(attr.clone()).map_err(|_| Error::new_spanned(&attr, usage))?;
    if !arg.path.is_ident("notices") {
        return Err(Error::new_spanned(&arg.path, usage));
    }
    match &arg.value {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Bool(b),
            ..
        }) => Ok(b.value),
        other => Err(Error::new_spanned(other, usage)),
    }
}

fn expand_call_handler(attr: TokenStream2, func: ItemFn) -> syn::Result<TokenStream2> {
    let notices = notices(attr)?;
    // The fn-pointer check below would catch these too, but with a message
    // about types instead of the actual mistake.
    if let Some(token) = &func.sig.asyncness {
        return Err(Error::new_spanned(
            token,
            "a call handler cannot be `async`: the runtime calls it synchronously, once per event",
        ));
    }
    if !func.sig.generics.params.is_empty() {
        return Err(Error::new_spanned(
            &func.sig.generics,
            "a call handler cannot be generic",
        ));
    }

    let name = &func.sig.ident;
    let sdk = quote!(::switchyard_sdk);
    let signature = quote! {
        fn(#sdk::Context, #sdk::Event) -> ::core::result::Result<#sdk::Plan, #sdk::HandlerError>
    };
    // Spanned at the user's signature so a type mismatch is reported there.
    let check = quote_spanned! {func.sig.span()=>
        const HANDLE: #signature = #name;
    };

    // Read by the runtime at load (runtime/wasm/src/manifest.rs). Only on
    // wasm: native section names have other rules (Mach-O wants
    // "segment,section"), and only a component is read.
    let manifest = (!notices).then(|| {
        quote! {
            #[cfg(target_family = "wasm")]
            #[unsafe(link_section = "switchyard-handler")]
            #[used]
            static MANIFEST: [u8; 12] = *b"notices=off\n";
        }
    });

    Ok(quote! {
        #func

        const _: () = {
            #check
            #manifest

            struct Component;

            impl #sdk::__private::CallHandler for Component {
                fn handle(
                    ctx: #sdk::Context,
                    event: #sdk::Event,
                ) -> ::core::result::Result<#sdk::Plan, #sdk::HandlerError> {
                    HANDLE(ctx, event)
                }
            }

            #sdk::__private::export_call_handler!(Component);
        };
    })
}
