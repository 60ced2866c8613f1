//! Procedural macros of the posbridge test harness.
//!
//! `posbridge_harness::both_backends!` forwards here with the harness's own path in front
//! (`$crate`), so the generated tests name the harness however the caller imported it.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, Token};

/// `harness_path; name, name, …` as `both_backends!` passes it on.
struct Input {
    harness: TokenStream2,
    names: Punctuated<Ident, Token![,]>,
}

impl Parse for Input {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        // The path arrives as whatever tokens precede the `;` (`$crate` is one opaque
        // identifier to us); it is only ever pasted back in front of item names.
        let harness = input.step(|cursor| {
            let mut tokens = TokenStream2::new();
            let mut rest = *cursor;
            while let Some((tt, next)) = rest.token_tree() {
                if matches!(&tt, proc_macro2::TokenTree::Punct(p) if p.as_char() == ';') {
                    return Ok((tokens, next));
                }
                tokens.extend([tt]);
                rest = next;
            }
            Err(cursor.error("expected `harness_path; name, …`"))
        })?;
        let names = Punctuated::parse_terminated(input)?;
        if names.is_empty() {
            return Err(input.error("both_backends! needs at least one test function name"));
        }
        Ok(Input { harness, names })
    }
}

/// Expands `harness_path; a, b` into the tests `a_sqlite`, `a_postgres`, `b_sqlite`,
/// `b_postgres`, each on a multi-threaded tokio runtime calling `a(Backend::…)`.
///
/// The PostgreSQL variant first asks `harness_path::postgres_available()`, which returns
/// `false` (skip) when `POSBRIDGE_TEST_POSTGRES=skip` and fails the test with instructions
/// when there is no PostgreSQL.
#[doc(hidden)]
#[proc_macro]
pub fn both_backends_impl(input: TokenStream) -> TokenStream {
    let Input { harness, names } = syn::parse_macro_input!(input as Input);
    let tests = names.iter().map(|name| {
        let sqlite = format_ident!("{}_sqlite", name);
        let postgres = format_ident!("{}_postgres", name);
        quote! {
            #[::tokio::test(flavor = "multi_thread")]
            async fn #sqlite() {
                #name(#harness::Backend::Sqlite).await
            }

            #[::tokio::test(flavor = "multi_thread")]
            async fn #postgres() {
                if !#harness::postgres_available().await {
                    return;
                }
                #name(#harness::Backend::Postgres).await
            }
        }
    });
    quote!(#(#tests)*).into()
}
