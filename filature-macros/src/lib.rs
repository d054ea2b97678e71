//! Attribute macros for [filature](https://docs.rs/filature): run a function's body on a named
//! thread, on the reactor, or in a green thread, as the SIP SIMPLE SDK's decorators do. Use them
//! through `filature` (`use filature::run_in_thread;`), which re-exports them; the generated code
//! names `::filature`.
//!
//! # What every macro does
//!
//! * The function keeps its attributes (docs included), visibility, name, generics, parameters
//!   and `where` clause. Its body becomes a `move` closure that takes the arguments by value and
//!   is handed to the dispatcher (`filature::__private`, a thin layer over the public functions).
//! * Only the waitable macro changes the signature: `-> T` becomes
//!   `-> filature::green::JoinHandle<T>`.
//! * Works on free functions and on methods (`self` by value, `self: Arc<Self>`, ...).
//!
//! # What they refuse, at compile time, with an error at the offending token
//!
//! * Borrowed arguments (`&self`, `&T`, `Foo<'a>`, lifetime parameters): the body runs later,
//!   maybe on another thread, after the caller's borrows have ended. `&'static T` is fine.
//! * `impl Trait` arguments without a `'static` bound, for the same reason.
//! * A return value, except for `#[run_in_waitable_green_thread]`: the caller does not wait.
//! * `async fn`, `const fn`, `unsafe fn` and non-Rust ABIs; functions without a body.
//! * Malformed arguments to the attribute.
//!
//! What the compiler checks afterwards (the argument and return types must be `Send + 'static`)
//! it reports itself, pointing at the bound in `filature::__private`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, FnArg, GenericParam, ItemFn, ReturnType, Token, Type, TypeParamBound};

/// Runs the function's body on the named thread `id` (SIP SIMPLE's `@run_in_thread`).
///
/// `#[run_in_thread("id")]` uses `ThreadManager::global().call_in_thread`: inline, before the
/// call returns, when called on thread `id`; queued otherwise (FIFO per caller, exactly once).
/// `#[run_in_thread("id", scheduled)]` always queues, even on thread `id`. The id may be any
/// expression of a type that is `AsRef<str>` (a literal, a `const`, a `String`), evaluated at
/// each call. The function returns nothing; a panic in the body is logged by the named thread,
/// which goes on (inline, it reaches the caller). Posting after `ThreadManager::stop` panics with
/// the error; call `call_in_thread` directly to get it as a value.
///
/// ```
/// use filature::run_in_thread;
/// use std::sync::mpsc::Sender;
///
/// #[run_in_thread("config")]
/// fn save(name: String, done: Sender<String>) {
///     let here = std::thread::current().name().unwrap().to_owned();
///     done.send(format!("{name} saved on {here}")).unwrap();
/// }
///
/// let (tx, rx) = std::sync::mpsc::channel();
/// save("settings".into(), tx);
/// assert_eq!(rx.recv().unwrap(), "settings saved on config");
/// ```
#[proc_macro_attribute]
pub fn run_in_thread(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand("run_in_thread", attr.into(), item.into()).into()
}

/// Runs the function's body on the reactor thread (SIP SIMPLE's `@run_in_twisted_thread`):
/// inline when called there, else as `reactor::call_from_thread` (which starts the reactor if
/// nobody has; before `run` on a prepared thread, queued until it runs). Returns nothing; a panic
/// in the body is logged by the reactor. Once the reactor has stopped, calling the function
/// panics with the error (`reactor::call_in_reactor` gives it as a value).
///
/// ```
/// use filature::{reactor, run_in_reactor};
/// use std::sync::mpsc::Sender;
///
/// #[run_in_reactor]
/// fn ping(reply: Sender<bool>) {
///     reply.send(reactor::is_reactor_thread()).unwrap();
/// }
///
/// let (tx, rx) = std::sync::mpsc::channel();
/// ping(tx);
/// assert!(rx.recv().unwrap());
/// ```
#[proc_macro_attribute]
pub fn run_in_reactor(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand("run_in_reactor", attr.into(), item.into()).into()
}

/// Runs the function's body in a new green thread on the reactor (SIP SIMPLE's
/// `@run_in_green_thread`), so it may block green-style (`green::sleep`, `Event::wait`, ...).
/// Returns at once, nothing; a panic in the body is logged. Once the reactor has stopped, calling
/// the function panics with the error.
///
/// ```
/// use filature::{green, run_in_green_thread};
/// use std::sync::mpsc::Sender;
///
/// #[run_in_green_thread]
/// fn later(reply: Sender<bool>) {
///     green::sleep(std::time::Duration::from_millis(1));
///     reply.send(green::in_green_thread()).unwrap();
/// }
///
/// let (tx, rx) = std::sync::mpsc::channel();
/// later(tx);
/// assert!(rx.recv().unwrap());
/// ```
#[proc_macro_attribute]
pub fn run_in_green_thread(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand("run_in_green_thread", attr.into(), item.into()).into()
}

/// Runs the function's body in a new green thread on the reactor and returns its
/// `JoinHandle<T>` at once, `T` being the declared return type (SIP SIMPLE's
/// `@run_in_waitable_green_thread`). The handle can be joined from any context (a green thread,
/// a main context, another OS thread): `join` gives the value or re-raises the panic. Once the
/// reactor has stopped, the handle reports `JoinError::Killed`.
///
/// ```
/// use filature::{green, run_in_waitable_green_thread};
///
/// #[run_in_waitable_green_thread]
/// fn answer(x: u32) -> u32 {
///     green::sleep(std::time::Duration::from_millis(1));
///     x * 2
/// }
///
/// let handle: green::JoinHandle<u32> = answer(21);
/// assert_eq!(handle.join(), 42);
/// ```
#[proc_macro_attribute]
pub fn run_in_waitable_green_thread(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand("run_in_waitable_green_thread", attr.into(), item.into()).into()
}

/// Where the body goes.
enum Target {
    Thread { id: Expr, scheduled: bool },
    Reactor,
    Green,
    Waitable,
}

fn expand(macro_name: &str, attr: TokenStream2, item: TokenStream2) -> TokenStream2 {
    match try_expand(macro_name, attr, item.clone()) {
        Ok(ts) => ts,
        // The item goes out unchanged with the errors, so callers see no follow-up errors.
        Err(e) => {
            let e = e.to_compile_error();
            quote!(#e #item)
        }
    }
}

fn try_expand(
    macro_name: &str,
    attr: TokenStream2,
    item: TokenStream2,
) -> syn::Result<TokenStream2> {
    let target = parse_target(macro_name, attr)?;
    let func: ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("#[{macro_name}] applies to a function or method with a body"),
        )
    })?;
    let mut errors = Errors::default();
    check_signature(macro_name, &func, &target, &mut errors);
    errors.finish()?;
    Ok(generate(func, target))
}

fn parse_target(macro_name: &str, attr: TokenStream2) -> syn::Result<Target> {
    let args = Punctuated::<Expr, Token![,]>::parse_terminated.parse2(attr.clone())?;
    if macro_name != "run_in_thread" {
        if let Some(first) = args.first() {
            return Err(syn::Error::new(
                first.span(),
                format!("#[{macro_name}] takes no arguments"),
            ));
        }
        return Ok(match macro_name {
            "run_in_reactor" => Target::Reactor,
            "run_in_green_thread" => Target::Green,
            _ => Target::Waitable,
        });
    }
    let mut it = args.into_iter();
    let id = it.next().ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "#[run_in_thread] needs the thread's id: #[run_in_thread(\"config\")] or \
             #[run_in_thread(\"config\", scheduled)]",
        )
    })?;
    let scheduled = match it.next() {
        None => false,
        Some(Expr::Path(p)) if p.path.is_ident("scheduled") => true,
        Some(other) => {
            return Err(syn::Error::new(
                other.span(),
                "expected `scheduled` (or nothing) after the thread id",
            ))
        }
    };
    if let Some(extra) = it.next() {
        return Err(syn::Error::new(
            extra.span(),
            "#[run_in_thread] takes the thread id and an optional `scheduled`, nothing more",
        ));
    }
    Ok(Target::Thread { id, scheduled })
}

/// Collects every error, so one compile shows them all.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, span: Span, msg: impl std::fmt::Display) {
        let e = syn::Error::new(span, msg);
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

fn check_signature(macro_name: &str, func: &ItemFn, target: &Target, errors: &mut Errors) {
    let sig = &func.sig;
    let later = "the body runs later, maybe on another thread, after the caller's borrows end";
    if let Some(t) = &sig.asyncness {
        errors.push(
            t.span(),
            format!(
                "#[{macro_name}] does not apply to an async fn (it already returns a future: \
                 run it with `HubHandle::spawn_future`)"
            ),
        );
    }
    if let Some(t) = &sig.constness {
        errors.push(
            t.span(),
            format!("#[{macro_name}] does not apply to a const fn"),
        );
    }
    if let Some(t) = &sig.unsafety {
        errors.push(
            t.span(),
            format!(
                "#[{macro_name}] does not apply to an unsafe fn: its body would run after the \
                 caller's safety obligations were checked"
            ),
        );
    }
    if let Some(abi) = &sig.abi {
        errors.push(
            abi.span(),
            format!("#[{macro_name}] does not apply to a function with a foreign ABI"),
        );
    }
    if let Some(v) = &sig.variadic {
        errors.push(
            v.span(),
            format!("#[{macro_name}] does not apply to a variadic function"),
        );
    }
    for param in &sig.generics.params {
        if let GenericParam::Lifetime(l) = param {
            errors.push(
                l.lifetime.span(),
                format!(
                    "#[{macro_name}] cannot take lifetime parameters: {later}; pass owned \
                     values or `'static` references"
                ),
            );
        }
    }
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(r) => {
                if let Some((and, _)) = &r.reference {
                    errors.push(
                        and.span(),
                        format!(
                            "#[{macro_name}] cannot take `&self`: {later}; take `self` by value \
                             (a cheap `Clone` handle) or `self: Arc<Self>`"
                        ),
                    );
                } else {
                    check_type(macro_name, &r.ty, true, errors);
                }
            }
            FnArg::Typed(t) => check_type(macro_name, &t.ty, true, errors),
        }
    }
    match (target, &sig.output) {
        (Target::Waitable, ReturnType::Type(_, ty)) => {
            if let Type::ImplTrait(it) = &**ty {
                errors.push(
                    it.span(),
                    "#[run_in_waitable_green_thread] needs a nameable return type (it becomes \
                     `JoinHandle<T>`), not `impl Trait`",
                );
            }
            check_type(macro_name, ty, false, errors);
        }
        (Target::Waitable, ReturnType::Default) => {}
        (_, ReturnType::Default) => {}
        (_, ReturnType::Type(_, ty)) if is_unit(ty) => {}
        (_, ReturnType::Type(arrow, ty)) => errors.push(
            arrow.span().join(ty.span()).unwrap_or_else(|| ty.span()),
            format!(
                "#[{macro_name}] functions return nothing: the caller does not wait for the body. \
                 Use #[run_in_waitable_green_thread] to get a `JoinHandle<T>`, or send the result \
                 back on a channel"
            ),
        ),
    }
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(t) if t.elems.is_empty())
}

/// Rejects borrows in a type: references without `'static`, any non-`'static` lifetime, and
/// (in an argument) `impl Trait` without a `'static` bound.
fn check_type(macro_name: &str, ty: &Type, is_arg: bool, errors: &mut Errors) {
    struct Borrows<'e> {
        macro_name: &'e str,
        is_arg: bool,
        errors: &'e mut Errors,
    }
    impl<'ast> Visit<'ast> for Borrows<'_> {
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            match &r.lifetime {
                None => self.errors.push(
                    r.and_token.span(),
                    format!(
                        "#[{}] cannot take a borrowed argument: the body runs later, maybe on \
                         another thread, after the caller's borrows end; pass an owned value \
                         (String, Vec, Arc<T>, a clone) or a `&'static` reference",
                        self.macro_name
                    ),
                ),
                Some(l) => self.visit_lifetime(l),
            }
            self.visit_type(&r.elem);
        }
        fn visit_lifetime(&mut self, l: &'ast syn::Lifetime) {
            if l.ident != "static" {
                self.errors.push(
                    l.span(),
                    format!(
                        "#[{}] cannot take an argument that borrows for `{l}`: the body runs \
                         later, maybe on another thread; only `'static` borrows can go there",
                        self.macro_name
                    ),
                );
            }
        }
        fn visit_type_impl_trait(&mut self, it: &'ast syn::TypeImplTrait) {
            let has_static = it
                .bounds
                .iter()
                .any(|b| matches!(b, TypeParamBound::Lifetime(l) if l.ident == "static"));
            if self.is_arg && !has_static {
                self.errors.push(
                    it.span(),
                    format!(
                        "#[{}] moves this argument into a call that runs later: write \
                         `impl ... + Send + 'static`",
                        self.macro_name
                    ),
                );
            }
            syn::visit::visit_type_impl_trait(self, it);
        }
    }
    Borrows {
        macro_name,
        is_arg,
        errors,
    }
    .visit_type(ty);
}

fn generate(mut func: ItemFn, target: Target) -> TokenStream2 {
    let name = func.sig.ident.to_string();
    let span = func.sig.ident.span();
    let block = &func.block;
    let has_docs = func.attrs.iter().any(|a| a.path().is_ident("doc"));
    let note = match &target {
        Target::Thread {
            scheduled: false, ..
        } => {
            "Runs on its named thread (`#[run_in_thread]`): inline when called there, else queued."
        }
        Target::Thread {
            scheduled: true, ..
        } => "Runs on its named thread (`#[run_in_thread(.., scheduled)]`): always queued.",
        Target::Reactor => "Runs on the reactor thread (`#[run_in_reactor]`).",
        Target::Green => {
            "Runs in a new green thread on the reactor (`#[run_in_green_thread]`); returns at once."
        }
        Target::Waitable => {
            "Runs in a new green thread on the reactor (`#[run_in_waitable_green_thread]`) and \
             returns its `JoinHandle` at once."
        }
    };
    let doc = has_docs.then(|| quote!(#[doc = ""] #[doc = #note]));
    let body = match &target {
        Target::Thread { id, scheduled } => quote_spanned! {span=>
            ::filature::__private::run_in_thread(#id, #scheduled, #name, move || -> () #block)
        },
        Target::Reactor => quote_spanned! {span=>
            ::filature::__private::run_in_reactor(#name, move || -> () #block)
        },
        Target::Green => quote_spanned! {span=>
            ::filature::__private::run_in_green_thread(#name, move || -> () #block)
        },
        Target::Waitable => {
            let ty = match &func.sig.output {
                ReturnType::Default => quote!(()),
                ReturnType::Type(_, ty) => quote!(#ty),
            };
            let body = quote_spanned! {span=>
                ::filature::__private::run_in_waitable_green_thread(move || -> #ty #block)
            };
            func.sig.output = syn::parse_quote_spanned! {span=>
                -> ::filature::green::JoinHandle<#ty>
            };
            body
        }
    };
    let attrs = &func.attrs;
    let vis = &func.vis;
    let sig = &func.sig;
    quote! {
        #(#attrs)*
        #doc
        #vis #sig {
            #body
        }
    }
}
