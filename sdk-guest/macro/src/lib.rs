//! The attribute macros of `switchyard-sdk`; use them through that crate.
//!
//! Each attribute exports the function it annotates as one world's export:
//! `#[call_handler]` the `handler` interface (world `call-handler`),
//! `#[verification_policy]` the `screen` interface (world
//! `verification-policy`). Both keep the function as written and add, next
//! to it, a unit struct implementing the interface's `Guest` trait by
//! calling the function, plus the `wit-bindgen` export of that struct
//! (`Export::expand`, shared). The function's signature is checked by
//! coercing it to a typed fn pointer spanned at the signature, so a
//! mismatch is one error there rather than several inside generated code.

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
    let sdk = sdk();
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
    let export = Export {
        what: "a call handler",
        calls: "once per event",
        guest: quote!(#sdk::__private::CallHandler),
        export_macro: quote!(#sdk::__private::export_call_handler),
        method: quote!(handle),
        params: vec![
            (quote!(ctx), quote!(#sdk::Context)),
            (quote!(event), quote!(#sdk::Event)),
        ],
        output: quote!(::core::result::Result<#sdk::Plan, #sdk::HandlerError>),
        extra: manifest.unwrap_or_default(),
    };
    export.expand(func)
}

/// Exports a function as the component's verification policy.
///
/// The runtime calls it once per incoming call, before the call's handler,
/// with what it found out about the caller; the function rules on the call:
///
/// ```ignore
/// use switchyard_sdk::prelude::*;
///
/// #[verification_policy]
/// fn screen(call: CallAttempt, findings: Findings) -> Ruling {
///     if findings.denied() {
///         Ruling::reject(608, "caller id not placed by its provider")
///     } else {
///         Ruling::Label(Label::Unverified)
///     }
/// }
/// ```
///
/// Any function name works, and the function stays callable from tests.
/// Use the attribute once per crate, and not together with
/// `#[call_handler]`: a policy is a component of its own. It takes no
/// arguments; another signature, `async` or generics are compile errors
/// pointing at the mistake.
#[proc_macro_attribute]
pub fn verification_policy(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    expand_verification_policy(attr.into(), func)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

fn expand_verification_policy(attr: TokenStream2, func: ItemFn) -> syn::Result<TokenStream2> {
    if !attr.is_empty() {
        return Err(Error::new_spanned(
            attr,
            "`#[verification_policy]` takes no arguments",
        ));
    }
    let sdk = sdk();
    let export = Export {
        what: "a verification policy",
        calls: "once per incoming call",
        guest: quote!(#sdk::__private::VerificationPolicy),
        export_macro: quote!(#sdk::__private::export_verification_policy),
        method: quote!(screen),
        params: vec![
            (quote!(call), quote!(#sdk::screening::CallAttempt)),
            (quote!(findings), quote!(#sdk::screening::Findings)),
        ],
        output: quote!(#sdk::screening::Ruling),
        extra: TokenStream2::new(),
    };
    export.expand(func)
}

/// The SDK crate as the guest names it.
fn sdk() -> TokenStream2 {
    quote!(::switchyard_sdk)
}

/// One world's export, as an attribute generates it: a unit struct
/// implementing the world's `Guest` trait by calling the user's function,
/// and the `wit-bindgen` export of that struct.
struct Export {
    /// What the function is, for error messages ("a call handler").
    what: &'static str,
    /// How often the runtime calls it, for the `async` error.
    calls: &'static str,
    /// The world's `Guest` trait, under `switchyard_sdk::__private`.
    guest: TokenStream2,
    /// The world's `wit-bindgen` export macro.
    export_macro: TokenStream2,
    /// The trait's one method.
    method: TokenStream2,
    /// The method's parameters (name, type), which the function must take
    /// by value in this order.
    params: Vec<(TokenStream2, TokenStream2)>,
    /// The method's return type.
    output: TokenStream2,
    /// More items for the generated block (a custom section).
    extra: TokenStream2,
}

impl Export {
    fn expand(self, func: ItemFn) -> syn::Result<TokenStream2> {
        let Export {
            what,
            calls,
            guest,
            export_macro,
            method,
            params,
            output,
            extra,
        } = self;
        // The fn-pointer check below would catch these too, but with a
        // message about types instead of the actual mistake.
        if let Some(token) = &func.sig.asyncness {
            return Err(Error::new_spanned(
                token,
                format!("{what} cannot be `async`: the runtime calls it synchronously, {calls}"),
            ));
        }
        if !func.sig.generics.params.is_empty() {
            return Err(Error::new_spanned(
                &func.sig.generics,
                format!("{what} cannot be generic"),
            ));
        }

        let name = &func.sig.ident;
        let names: Vec<_> = params.iter().map(|(name, _)| name).collect();
        let types: Vec<_> = params.iter().map(|(_, ty)| ty).collect();
        // Spanned at the user's signature so a type mismatch is reported there.
        let check = quote_spanned! {func.sig.span()=>
            const EXPORTED: fn(#(#types),*) -> #output = #name;
        };

        Ok(quote! {
            #func

            const _: () = {
                #check
                #extra

                struct Component;

                impl #guest for Component {
                    fn #method(#(#names: #types),*) -> #output {
                        EXPORTED(#(#names),*)
                    }
                }

                #export_macro!(Component);
            };
        })
    }
}
